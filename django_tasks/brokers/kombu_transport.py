"""Kombu's other transports (``sqs://``, ``filesystem://``, ``sqlalchemy://`` and the rest):
a broker on kombu's transport-independent API, for a project whose messages must live where
Celery's could.

URL: what ``kombu.Connection`` reads for the transport, e.g. ``sqs://`` (credentials from
the environment) or ``sqs://KEY:SECRET@``; any kombu transport can be named as
``kombu+<transport>://...`` (``kombu+redis://`` is kombu's own Redis transport, not our
Redis broker). ``filesystem:///var/spool/tasks`` keeps messages in that folder (created if
need be) unless the transport options name folders of their own. Query options of ours,
removed before kombu sees the URL: ``prefetch=N`` (default 64), the most messages a
consuming process holds unacked. The transport's own options (kombu's
``transport_options``, Celery's ``broker_transport_options``) come from the setting
``TASKS_BROKER_TRANSPORT_OPTIONS``: ``polling_interval``, SQS's ``region`` and
``visibility_timeout``, and so on.

What holds is the transport's to say (docs/reference/kombu-transports.md): a delivery belongs
to the connection that received it, as on RabbitMQ (``channel.py``); most of these
transports are polled (kombu's "virtual" transports), so a consumer takes what it asks for
and an idle one learns of a message within the transport's ``polling_interval``; none counts
deliveries or keeps priorities here; delays wait in the outbox. A message a process received
and did not ack goes back to its queue when the process closes its connection (a worker
stopping, even on a failure), but on a process killed outright it is the transport's: SQS
makes it visible again after its ``visibility_timeout`` (and so would a task running longer
than that); the filesystem and SQLAlchemy transports never hand it out again.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kombu
import kombu.exceptions
import kombu.transport
import kombu.transport.virtual

from ..conf import task_settings
from ..exceptions import BrokerUnreachable, ConfigurationError
from ..message import Message, bounded_priority
from .base import Capabilities, Delivery
from .channel import ChannelBroker, SessionBase, our_options, prefetch_option
from .headers import incoming, outgoing

#: The prefix that names any kombu transport: ``kombu+sqs://``.
PREFIX = "kombu+"
CONNECT_TIMEOUT = 2.0
_OPTIONS = ("prefetch",)
_LOST = (OSError, kombu.exceptions.OperationalError, kombu.exceptions.ConnectionError)


class KombuUnreachable(BrokerUnreachable, ConnectionError):
    """The kombu transport's service did not answer (down, unreachable, or refused).

    Check ``TASKS_BROKER_URL`` and ``TASKS_BROKER_TRANSPORT_OPTIONS``, and that the service
    runs; a worker keeps trying on its next fetch.
    """


def transport_url(url: str) -> tuple[str, str, int]:
    """The URL kombu reads (our options removed, ``kombu+`` dropped), the transport's name
    (``sqla`` of ``sqla+postgresql://``, whose database URL kombu reads after the ``+``),
    and ``prefetch``."""
    parts, ours, rest = our_options(url, _OPTIONS)
    scheme = parts.scheme[len(PREFIX):] if parts.scheme.startswith(PREFIX) else parts.scheme
    if not scheme.split("+", 1)[0]:
        raise ConfigurationError(f"TASKS_BROKER_URL: {PREFIX}... names no kombu transport "
                                 "(kombu+sqs://, kombu+filesystem://, ...).")
    # Written out: ``urlunsplit`` drops the ``//`` of an empty host (``filesystem:///x``),
    # and kombu then takes the URL for a host name.
    kombu_url = f"{scheme}://{parts.netloc}{parts.path}" + (f"?{rest}" if rest else "")
    return kombu_url, scheme.split("+", 1)[0], prefetch_option(ours)


def transport_class(name: str) -> type:
    """kombu's transport class for ``name``; a clear error when kombu has none, or the
    transport's own library is not installed."""
    try:
        cls = kombu.transport.resolve_transport(name)
    except KeyError as exc:
        raise ConfigurationError(f"TASKS_BROKER_URL: {exc.args[0] if exc.args else exc}") \
            from None
    except ImportError as exc:
        raise ConfigurationError(
            f"TASKS_BROKER_URL: kombu's {name!r} transport cannot be imported ({exc}); "
            f"install what it needs (pip install 'kombu[{name}]').") from None
    if not isinstance(cls, type):
        raise ConfigurationError(f"TASKS_BROKER_URL: no kombu transport {name!r}.")
    return cls


def _end_read(channel: Any) -> None:
    """kombu's SQLAlchemy transport counts a queue in a transaction it leaves open: idle in
    transaction, holding a lock that any change to its tables (a migration, a ``DROP``)
    waits for, and keeping old rows from being vacuumed. End it."""
    database = getattr(channel, "_session", None)  # the SQLAlchemy transport's own session
    if database is not None:
        database.commit()


class _Session(SessionBase):
    """One connection and channel of one thread: a consumer's, or a publisher's."""

    def __init__(self, connection: Any) -> None:
        super().__init__(connection)
        self.consumers: list[Any] = []
        self.producer: Any = None

    def consume(self, queues: Sequence[str], prefetch: int) -> None:
        self.channel.basic_qos(0, prefetch, False)  # positional: kombu's names vary
        for queue in queues:
            consumer = kombu.Consumer(self.channel, queues=[kombu.Queue(queue, no_declare=True)],
                                      no_ack=False, auto_declare=False,
                                      on_message=functools.partial(self.received, queue))
            consumer.consume()
            self.consumers.append(consumer)
        self.queues = tuple(queues)

    def drain(self, timeout: float) -> bool:
        """Take what the transport has (for a polled one: one message a call), waiting up
        to ``timeout`` for the first; True if anything came."""
        try:
            self.connection.drain_events(timeout=timeout)
        except TimeoutError:  # socket.timeout: nothing came
            return False
        return True

    def ack(self, raws: Sequence[Any]) -> None:
        for raw in raws:
            raw.ack()

    def reject(self, raw: Any) -> None:
        raw.reject(requeue=True)

    def usable(self) -> bool:
        return self.open and self.pid == os.getpid()

    def close(self) -> None:
        """Close the connection: what it received and did not ack goes back to its queues.
        In a forked child, only forget it: closing the parent's channel would hand back what
        the parent holds."""
        self.open = False
        self.buffer.clear()
        if self.pid == os.getpid():
            with contextlib.suppress(Exception):
                self.connection.close()
            database = getattr(self.channel, "_session", None)  # SQLAlchemy's: its connection
            if database is not None:  # goes back to the engine's pool
                with contextlib.suppress(Exception):
                    database.close()


class KombuBroker(ChannelBroker[_Session]):
    capabilities = Capabilities(leases=False, native_delays=False, delivery_counts=False,
                                priorities=False, transactional=False, durable=True,
                                broadcast=False)
    kind = "kombu transport"
    unreachable = KombuUnreachable
    lost = _LOST

    def __init__(self, url: str = "filesystem://") -> None:
        super().__init__(url)
        self._kombu_url, self.transport, self.prefetch = transport_url(url)
        cls = transport_class(self.transport)
        options = task_settings.BROKER_TRANSPORT_OPTIONS or {}
        if not isinstance(options, dict):
            raise ConfigurationError("TASKS_BROKER_TRANSPORT_OPTIONS must be a dict of kombu "
                                     f"transport options, not {type(options).__name__}.")
        self.options: dict[str, Any] = dict(options)
        # Set on the transport once connected, not handed to it: the SQLAlchemy transport
        # passes its options on to SQLAlchemy's ``create_engine``, which refuses it.
        self._interval = self.options.pop("polling_interval", None)
        if self.transport == "filesystem":
            self._folders()
        # A polled transport hands a consumer what it asks for; one that pushes (qpid)
        # sends up to the prefetch ahead of the acks.
        polled = issubclass(cls, kombu.transport.virtual.Transport)
        self.window = None if polled else self.prefetch
        interval = getattr(cls, "polling_interval", 0) if self._interval is None \
            else self._interval
        self.wait_lateness = float(interval or 0) if polled else 0.0

    def _folders(self) -> None:
        """``filesystem:///path``: messages in ``path``, unless the options name folders."""
        path = urlsplit(self._kombu_url).path
        if path and path != "/" and not ({"data_folder_in", "data_folder_out"} & set(self.options)):
            self.options["data_folder_in"] = self.options["data_folder_out"] = path
        for key in ("data_folder_in", "data_folder_out", "processed_folder"):
            if self.options.get(key):
                Path(self.options[key]).mkdir(parents=True, exist_ok=True)

    # -- plumbing ------------------------------------------------------------------------

    def _connect(self) -> _Session:
        connection = kombu.Connection(self._kombu_url, connect_timeout=CONNECT_TIMEOUT,
                                      transport_options=self.options)
        with self._errors():
            connection.ensure_connection(max_retries=1, interval_start=0.25,
                                         interval_step=0.25, interval_max=0.25)
            if self._interval is not None and hasattr(connection.transport, "polling_interval"):
                connection.transport.polling_interval = float(self._interval)
            return _Session(connection)

    def _declare(self, session: _Session, queue: str) -> None:
        """Declare ``queue`` durably, once per connection."""
        if queue not in session.declared:
            session.channel.queue_declare(queue=queue, durable=True, auto_delete=False)
            session.declared.add(queue)
            self._known.add(queue)

    def _consume(self, session: _Session, queues: Sequence[str]) -> None:
        for queue in queues:
            self._declare(session, queue)
        session.consume(queues, self.prefetch)

    def ping(self) -> bool:
        """True once a connection is made (or in hand); raises :class:`KombuUnreachable`."""
        self._publisher()
        return True

    # -- publishing ----------------------------------------------------------------------

    def _publish_on(self, session: _Session, messages: Sequence[Message]) -> None:
        with self._errors(session), session.lock:
            if session.producer is None:
                session.producer = kombu.Producer(session.channel, auto_declare=False)
            for message in messages:
                self._declare(session, message.queue)
                body, headers = outgoing(message)
                session.producer.publish(
                    body, exchange="", routing_key=message.queue, headers=headers,
                    correlation_id=message.id, content_type="application/json",
                    content_encoding="utf-8", serializer=None, delivery_mode=2,
                    priority=bounded_priority(message), retry=False)

    # -- consuming -----------------------------------------------------------------------

    def fetch(self, queues: Sequence[str], owner: str, limit: int, lease: float, *,
              look: str | None = None) -> list[Delivery]:
        """Up to ``limit`` messages, taken without waiting."""
        if limit <= 0 or not queues:
            return []
        session = self._consumer(queues)
        with self._errors(session), session.lock:
            while len(session.buffer) < limit and session.drain(0):
                pass
            taken = [session.buffer.popleft() for _ in range(min(limit, len(session.buffer)))]
        return [self._delivery(session, queue, raw, owner) for queue, raw in taken]

    def _delivery(self, session: _Session, queue: str, raw: Any, owner: str) -> Delivery:
        headers = dict(raw.headers or {})
        properties = {**dict(raw.properties or {}), "content_type": raw.content_type,
                      "content_encoding": raw.content_encoding}
        deliveries = 2 if (raw.delivery_info or {}).get("redelivered") else 1
        task_id = headers.get("id") or properties.get("correlation_id") or ""
        envelope, body = incoming(raw.body, headers, properties, queue)
        return Delivery(tag=self._hold(session, raw), body=body, queue=queue,
                        deliveries=deliveries, owner=owner, task_id=str(task_id),
                        envelope=envelope)

    def wait(self, queues: Sequence[str], timeout: float, *,
             accept: Callable[[str], bool] | None = None) -> bool | None:
        """Block until a message arrives on ``queues``, at most ``timeout`` seconds (a
        polled transport looks every ``polling_interval``)."""
        if not queues:
            return False
        session = self._consumer(queues)
        with self._errors(session), session.lock:
            return bool(session.buffer) or session.drain(max(timeout, 0.01))

    # -- inspection ----------------------------------------------------------------------

    def _queue_op(self, queue: str, op: str) -> int:
        session, _ = self._publisher()
        with self._errors(session), session.lock:
            if op == "purge":
                return int(session.channel.queue_purge(queue) or 0)
            count = session.channel.queue_declare(queue=queue, passive=True).message_count
            _end_read(session.channel)
            return int(count)

