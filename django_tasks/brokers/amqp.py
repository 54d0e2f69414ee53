"""The AMQP broker (``amqp://``, ``amqps://``, ``pyamqp://``), on kombu's py-amqp transport.

URL: what ``kombu.Connection`` reads for py-amqp, e.g.
``amqp://user:password@host:5672/vhost``, plus three query options of ours, removed before
kombu sees the URL:

* ``queue_type=quorum`` (default) or ``classic``: the type of every queue this broker
  declares. Quorum queues are replicated and count deliveries (``x-delivery-count``), which
  the poison limit needs; classic queues have priorities (``x-max-priority`` 9) but only a
  ``redelivered`` flag, so a task that kills its process is delivered again forever.
* ``prefetch=N`` (default 64): the most messages RabbitMQ sends each consuming process ahead
  of its acks. A process's window starts at one message; it doubles (up to ``N``) at a fetch
  after one that took half of it or more, or after waiting briefly for what its last acks let
  come, and goes back to one once the process has received nothing for
  ``NARROW_AFTER_SECONDS`` (see ``_Session.widen``). So an idle worker's processes are sent
  one message each, and tasks queued together spread over them, while a busy one takes up
  to ``N`` at a time; the worker's batches take from what was sent. A long task started in a
  busy spell can hold up to ``N - 1`` messages sent to its process; ``prefetch=1`` makes
  dispatch fully fair (Celery's ``-O fair``) at the cost of one round trip per task.
* ``consumer_timeout=SECONDS`` (default 86400): the queue argument ``x-consumer-timeout``.
  RabbitMQ closes the channel of a consumer that holds a delivery unacked longer than its
  consumer timeout (server default 30 minutes), which would hand a long task that still
  runs to a second worker. RabbitMQ 3.12+ honours the queue argument; older servers ignore
  it, and need ``consumer_timeout`` in ``rabbitmq.conf`` instead.

No leases: a delivery belongs to the channel that received it. A consumer that dies closes
its connection, and RabbitMQ puts what it held back in the queue at once (counted on quorum
queues). ``ack`` of a delivery whose channel is gone is refused: that is this broker's
fencing. Delays are not RabbitMQ's: messages not due yet wait in the outbox table and a
worker's relay publishes them when due, so ``publish`` only ever sees due messages.

Wire format: Celery's protocol v2 as Celery puts it on AMQP: the envelope's headers as AMQP
headers, ``[args, kwargs, embed]`` as a JSON body, the id as ``correlation_id``; persistent
(``delivery_mode`` 2), confirmed by the server (publisher confirms). A received message is put
back together into the envelope that ``Message.from_envelope`` reads (``Delivery.envelope``:
not encoded as JSON text only to be parsed again).

Failures: connecting is bounded by ``CONNECT_TIMEOUT`` and one quick retry, a publisher
confirm by ``CONFIRM_TIMEOUT``, so an operation while RabbitMQ is down fails within seconds
with :class:`AmqpUnreachable`, whose message names the URL with its password hidden. A
publish retried on a new connection may publish a message twice, which at-least-once allows.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlunsplit

import amqp.exceptions
import kombu
import kombu.exceptions

from ..exceptions import BrokerUnreachable, ConfigurationError
from ..message import MAX_PRIORITY, Message, bounded_priority
from .base import Capabilities, Delivery
from .channel import ChannelBroker, SessionBase, our_options, prefetch_option
from .headers import incoming, outgoing

CONNECT_TIMEOUT = 2.0
CONFIRM_TIMEOUT = 5.0
QUEUE_TYPES = ("quorum", "classic")
DEFAULT_QUEUE_TYPE = "quorum"
#: Long enough for any task a worker should run under one delivery (see the module doc).
DEFAULT_CONSUMER_TIMEOUT = 24 * 3600.0
_OPTIONS = ("queue_type", "consumer_timeout", "prefetch")
#: The window (prefetch) a process starts with, and goes back to when idle.
START_WINDOW = 1
#: A process that has received nothing for this long, and holds nothing, is idle: its window
#: goes back to ``START_WINDOW``, so that tasks that come next spread over the processes.
NARROW_AFTER_SECONDS = 1.0
#: How long a fetch that widened its window waits for the first messages it lets come.
WIDEN_WAIT_SECONDS = 0.05
#: A wait begun this soon after an ack that ends this soon with messages was for what the ack
#: let come (the window held them back): the window doubles at the next fetch.
STARVED_SECONDS = 0.01
# kombu and py-amqp have no type stubs: their objects are ``Any`` at this boundary.
_LOST = (OSError, amqp.exceptions.ConnectionError, amqp.exceptions.RecoverableConnectionError,
         kombu.exceptions.OperationalError)


class AmqpUnreachable(BrokerUnreachable, ConnectionError):
    """The AMQP broker did not answer (down, unreachable, or too slow).

    Check that RabbitMQ runs and that ``TASKS_BROKER_URL`` names its host, port, virtual host,
    user and password; a worker keeps trying on its next fetch.
    """


class QueueMismatch(ConfigurationError):
    """A queue exists on the server with other arguments than this broker declares.

    Its type (``queue_type=``) or, on classic queues, its ``x-max-priority`` differs: delete
    the queue (after draining it), or set ``queue_type=`` to what the queue is.
    """


def _split_url(url: str) -> tuple[str, str, float, int]:
    """``url`` without our query options; the queue type, consumer timeout and prefetch."""
    parts, ours, rest = our_options(url, _OPTIONS)
    queue_type = ours.get("queue_type") or DEFAULT_QUEUE_TYPE
    if queue_type not in QUEUE_TYPES:
        raise ConfigurationError(f"TASKS_BROKER_URL: queue_type={queue_type!r} is not one of "
                                 f"{', '.join(QUEUE_TYPES)}.")
    try:
        timeout = float(ours.get("consumer_timeout") or DEFAULT_CONSUMER_TIMEOUT)
    except ValueError:
        timeout = 0.0
    if not timeout > 0:
        raise ConfigurationError("TASKS_BROKER_URL: consumer_timeout= must be a positive "
                                 f"number of seconds, not {ours['consumer_timeout']!r}.")
    return urlunsplit(parts._replace(query=rest)), queue_type, timeout, prefetch_option(ours)


#: Bytes asked of the socket at once when py-amqp reads a frame.
READ_AHEAD = 4096


def _read_ahead(transport: Any) -> None:
    """Make py-amqp's plain TCP transport read ahead: it asks the socket for exactly the
    bytes it needs next, three reads per frame and three frames per message (about nine
    ``recv`` system calls a message). Asked for up to ``READ_AHEAD`` bytes, a read brings
    several messages, and py-amqp keeps what it did not need yet in its buffer (its
    ``_read`` takes more than it asked for as it is). TLS transports are left as they are."""
    try:
        sock, recv = transport.sock, transport._quick_recv
    except AttributeError:  # not py-amqp's TCPTransport
        return
    if sock is None or getattr(recv, "__self__", None) is not sock:
        return
    socket_recv: Callable[[int], bytes] = recv  # the socket's own: nothing wraps it

    def read_ahead(size: int) -> bytes:
        return socket_recv(max(size, READ_AHEAD))

    transport._quick_recv = read_ahead


class _Session(SessionBase):
    """One connection and channel of one thread: a consumer's, or a publisher's."""

    def __init__(self, connection: Any) -> None:
        super().__init__(connection)
        #: The delivery tags of the messages received and not acked or rejected yet.
        self.unsettled: set[int] = set()
        # Consuming: the first consumer of each queue, those added to widen the window,
        # the window (the first ones' prefetch, and the sum with the added ones'), and
        # when a message last came.
        self.tags: list[str] = []
        self.added: list[str] = []
        self.first_window = self.window = 0
        self.took_full = False  # the last fetch took half the window or more
        self.starved = False  # the last wait was for messages that the last acks let come
        self.acked_at = 0.0
        self.received_at = time.monotonic()
        # Publisher confirms: the channel's sequence numbers not confirmed yet, and the last
        # one used (they count from 1 once the channel is in confirm mode).
        self.confirming = False
        self.sequence = 0
        self.unconfirmed: set[int] = set()
        self.refused = 0

    def received(self, queue: str, message: Any) -> None:
        super().received(queue, message)
        self.unsettled.add(message.delivery_tag)
        self.received_at = time.monotonic()

    def holds_nothing(self) -> bool:
        return not self.buffer and not self.unsettled

    def consume(self, queues: Sequence[str], window: int) -> None:
        """Consume ``queues``, one consumer each, with a prefetch of ``window``."""
        self.tags = self._consumers(queues, window)
        self.queues, self.first_window, self.window = tuple(queues), window, window

    def widen(self, more: int) -> None:
        """Let ``more`` messages of each queue come ahead of the acks, by one more consumer
        each. RabbitMQ gives a consumer the prefetch its channel had when it started (a new
        ``basic.qos`` does not change it), and cancelling one to start it again is not
        harmless: a quorum queue takes back, and counts as delivered, the messages that
        were on their way to it."""
        self.added += self._consumers(self.queues, more)
        self.window += more

    def narrow(self) -> None:
        """Back to the first consumers' window: called while idle, holding nothing, so
        only a message published at this very moment can be on its way to a consumer
        cancelled here (it goes back to the queue, counted as delivered)."""
        for tag in self.added:
            self.channel.basic_cancel(tag)
        self.added, self.window = [], self.first_window
        self.took_full = self.starved = False  # what it knew of the busy spell is over

    def _consumers(self, queues: Sequence[str], prefetch: int) -> list[str]:
        # Per consumer (quorum queues have no global QoS), before consuming.
        self.channel.basic_qos(prefetch_size=0, prefetch_count=prefetch, a_global=False)
        # On py-amqp's channel itself: kombu's Consumer would wrap each delivery in a
        # message object of its own first, which nothing here reads.
        return [self.channel.basic_consume(queue=queue, no_ack=False,
                                           callback=functools.partial(self.received, queue))
                for queue in queues]

    def ack(self, raws: Sequence[Any]) -> None:
        """Ack ``raws`` (messages received on this channel): with one ``basic.ack`` of
        the highest tag (``multiple``) when they are every message unsettled up to it,
        else one each."""
        tags = {raw.delivery_tag for raw in raws}
        last = max(tags)
        if len(tags) > 1 and all(tag in tags for tag in self.unsettled if tag <= last):
            self.channel.basic_ack(last, multiple=True)
        else:
            for tag in sorted(tags):
                self.channel.basic_ack(tag)
        self.unsettled -= tags
        self.acked_at = time.monotonic()

    def reject(self, raw: Any) -> None:
        self.channel.basic_reject(raw.delivery_tag, requeue=True)
        self.unsettled.discard(raw.delivery_tag)

    def usable(self) -> bool:
        return self.open and self.pid == os.getpid() and bool(self.channel.is_open)

    def close(self) -> None:
        """Drop the connection; in a forked child, only close its copy of the parent's
        socket (no AMQP close: the parent's connection lives on)."""
        self.open = False
        self.buffer.clear()
        self.unsettled.clear()
        with contextlib.suppress(Exception):
            if self.pid == os.getpid():
                self.connection.close()
            else:
                self.connection.connection.transport.sock.close()

    def start_confirms(self) -> None:
        """Put the channel in confirm mode, with this session told of each ack and nack."""
        if self.confirming:
            return
        self.channel.events["basic_ack"].add(self._acked)
        self.channel.events["basic_nack"].add(self._nacked)
        self.channel.confirm_select()
        self.channel._confirm_selected = True  # py-amqp's own flag: never select again
        self.confirming = True

    def sent(self) -> None:
        self.sequence += 1
        self.unconfirmed.add(self.sequence)

    def _acked(self, tag: int, multiple: bool) -> None:
        if multiple:
            self.unconfirmed = {t for t in self.unconfirmed if t > tag}
        else:
            self.unconfirmed.discard(tag)

    def _nacked(self, tag: int, multiple: bool) -> None:
        before = len(self.unconfirmed)
        self._acked(tag, multiple)
        self.refused += before - len(self.unconfirmed)

    def wait_confirms(self, timeout: float) -> None:
        """Wait until RabbitMQ confirmed every message sent: raise ``MessageNacked`` if it
        refused one, ``TimeoutError`` if it did not answer in ``timeout``."""
        deadline = time.monotonic() + timeout
        while self.unconfirmed:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no publisher confirm within {timeout:g} s")
            self.connection.drain_events(timeout=left)
        if self.refused:
            refused, self.refused = self.refused, 0
            raise amqp.exceptions.MessageNacked(f"RabbitMQ refused {refused} message(s)")

    def drain(self, timeout: float) -> bool:
        """Read what the server sent, waiting up to ``timeout`` for the first method; True
        if anything arrived.

        What is already sent is read with the socket made non-blocking once for the whole
        read, then handled: py-amqp's ``drain_events`` sets and restores the socket's
        timeout around every frame (two system calls a frame, three frames a message)."""
        arrived = False
        if timeout > 0:
            try:
                self.connection.drain_events(timeout=timeout)
                arrived = True
            except TimeoutError:  # socket.timeout: nothing came
                return False
        connection = self.connection.connection  # py-amqp's
        transport = connection.transport
        frames = []
        try:
            with transport.having_timeout(0):
                while True:
                    frames.append(transport.read_frame())
        except TimeoutError:  # nothing (more) to read; a partial frame stays buffered
            pass
        for frame in frames:
            connection.on_inbound_frame(frame)
        return arrived or bool(frames)


class AmqpBroker(ChannelBroker[_Session]):
    # The flags of the default queue type (quorum); ``queue_type=classic`` changes two.
    capabilities = Capabilities(leases=False, native_delays=False, delivery_counts=True,
                                priorities=False, transactional=False, durable=True,
                                broadcast=False)
    kind = "AMQP broker"
    unreachable = AmqpUnreachable
    lost = _LOST

    def __init__(self, url: str = "amqp://guest:guest@127.0.0.1:5672//") -> None:
        super().__init__(url)
        self._kombu_url, self.queue_type, self.consumer_timeout, self.prefetch = \
            _split_url(url)
        self.window = self.prefetch
        self.start_window = min(START_WINDOW, self.prefetch)
        if self.queue_type == "classic":
            # Per instance: the worker reads ``broker.capabilities``, never the class.
            vars(self)["capabilities"] = Capabilities(
                leases=False, native_delays=False, delivery_counts=False, priorities=True,
                transactional=False, durable=True, broadcast=False)
        self._arguments: dict[str, Any] = {"x-queue-type": self.queue_type,
                                           "x-consumer-timeout": int(self.consumer_timeout * 1000)}
        if self.queue_type == "classic":
            self._arguments["x-max-priority"] = MAX_PRIORITY

    # -- plumbing ------------------------------------------------------------------------

    def _connect(self) -> _Session:
        connection = kombu.Connection(
            self._kombu_url, connect_timeout=CONNECT_TIMEOUT,
            # No AMQP heartbeats: a consumer running a long task sends none, and the server
            # would close its connection (and redeliver the task). Dead peers are found by
            # TCP: the server sees a closed socket at once when a process dies.
            heartbeat=0, transport_options={"confirm_publish": True})
        with self._errors():
            connection.ensure_connection(max_retries=1, interval_start=0.25,
                                         interval_step=0.25, interval_max=0.25)
            _read_ahead(connection.connection.transport)
            return _Session(connection)

    def _declare(self, session: _Session, queue: str) -> None:
        """Declare ``queue`` durably with our arguments, once per connection."""
        if queue in session.declared:
            return
        try:
            session.channel.queue_declare(queue=queue, durable=True, auto_delete=False,
                                          arguments=self._arguments)
        except amqp.exceptions.PreconditionFailed as exc:
            session.close()
            raise QueueMismatch(f"Queue {queue!r} on {self.describe()} does not match "
                                f"queue_type={self.queue_type}: {exc}. Delete it (after "
                                "draining it), or set queue_type= to its type.") from None
        session.declared.add(queue)
        self._known.add(queue)

    def _consume(self, session: _Session, queues: Sequence[str]) -> None:
        """A new consumer starts with a window of ``START_WINDOW``."""
        for queue in queues:
            self._declare(session, queue)
        session.consume(queues, self.start_window)

    def sent_ahead(self) -> int | None:
        """The window of the calling thread's consumer (see the module's doc)."""
        session: _Session | None = getattr(self._local, "consumer", None)
        return session.window if session is not None and session.window else self.start_window

    def ping(self) -> bool:
        """True if the server answers (one round trip); raises :class:`AmqpUnreachable`."""
        session, _ = self._publisher()
        with self._errors(session), session.lock:
            session.channel.basic_qos(prefetch_size=0, prefetch_count=0, a_global=False)
        return True

    # -- publishing ----------------------------------------------------------------------

    def _publish_on(self, session: _Session, messages: Sequence[Message]) -> None:
        """Send every message, then wait for RabbitMQ's confirms of all of them together:
        one wait for a batch, not one per message."""
        with self._errors(session), session.lock:
            channel = session.channel
            session.start_confirms()
            for message in messages:
                self._declare(session, message.queue)
                body, headers = outgoing(message)
                raw = channel.prepare_message(
                    body.encode("utf-8"), bounded_priority(message),
                    "application/json", "utf-8", headers,
                    {"correlation_id": message.id, "delivery_mode": 2})
                # py-amqp's publish without its wait for this one message's confirm.
                channel._basic_publish(raw, exchange="", routing_key=message.queue)
                session.sent()
            session.wait_confirms(CONFIRM_TIMEOUT)

    # -- consuming -----------------------------------------------------------------------

    def fetch(self, queues: Sequence[str], owner: str, limit: int, lease: float, *,
              look: str | None = None) -> list[Delivery]:
        """Up to ``limit`` messages already received, reading without blocking (RabbitMQ
        sends at most the URL's ``prefetch`` ahead of the acks)."""
        if limit <= 0 or not queues:
            return []
        session = self._consumer(queues)
        with self._errors(session), session.lock:
            session.drain(0)
            if (session.took_full or session.starved) and session.window < self.prefetch:
                # The last fetch took half the window or more, or the process waited for
                # what its last acks let come: the window may be what runs dry, not the
                # queue. Double it (and, with nothing here yet, wait a moment for what the
                # new consumers are sent). Only here, after the batch fetched last has run:
                # a process that took one message and more at once would hold them behind
                # it, were it long.
                session.widen(min(session.window, self.prefetch - session.window))
                if not session.buffer:
                    session.drain(WIDEN_WAIT_SECONDS)
            taken = [session.buffer.popleft() for _ in range(min(limit, len(session.buffer)))]
            session.took_full = 2 * len(taken) >= session.window
            session.starved = False
        return [self._delivery(session, queue, raw, owner) for queue, raw in taken]

    def _delivery(self, session: _Session, queue: str, raw: Any, owner: str) -> Delivery:
        headers = dict(raw.headers or {})
        properties = dict(raw.properties or {})
        if self.queue_type == "quorum":  # returns so far; absent on the first delivery
            deliveries = int(headers.get("x-delivery-count") or 0) + 1
        else:
            deliveries = 2 if raw.delivery_info.get("redelivered") else 1
        task_id = headers.get("id") or properties.get("correlation_id") or ""
        tag = self._hold(session, raw)
        envelope, body = incoming(raw.body, headers, properties, queue)
        return Delivery(tag=tag, body=body, queue=queue, deliveries=deliveries, owner=owner,
                        task_id=str(task_id), envelope=envelope)

    def wait(self, queues: Sequence[str], timeout: float, *,
             accept: Callable[[str], bool] | None = None) -> bool | None:
        """Block until a message arrives on ``queues``, at most ``timeout`` seconds."""
        if not queues:
            return False
        session = self._consumer(queues)
        with self._errors(session), session.lock:
            if session.buffer:
                return True
            started = time.monotonic()
            if session.drain(max(timeout, 0.01)) and session.buffer:
                # Messages sent for acks made just before, which came only now: the process
                # waited for its window, not for the queue.
                session.starved = (started - session.acked_at <= STARVED_SECONDS
                                   and time.monotonic() - started <= STARVED_SECONDS)
                return True
            if (session.added and session.holds_nothing()
                    and time.monotonic() - session.received_at >= NARROW_AFTER_SECONDS):
                # Idle: what comes next is sent one message to a process at first, so
                # tasks queued together spread over the worker's processes.
                session.narrow()
            return False

    # -- inspection ----------------------------------------------------------------------

    def _queue_op(self, queue: str, op: str) -> int:
        session, _ = self._publisher()
        with self._errors(session), session.lock:
            try:
                if op == "purge":
                    return int(session.channel.queue_purge(queue=queue) or 0)
                return int(session.channel.queue_declare(queue=queue, passive=True)
                           .message_count)
            except amqp.exceptions.NotFound:  # the channel closed with it: a new one
                session.channel = session.connection.channel()
                return 0
