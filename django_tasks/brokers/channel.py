"""What brokers whose deliveries belong to a channel share: RabbitMQ (``amqp.py``) and
kombu's other transports (``kombu_transport.py``).

Such a broker has no leases: a delivery is held by the connection of the process that
received it, and settled on it. A process that dies closes its connection, and the server
(or the transport's own visibility timeout) puts what it held back in the queue. Here, a
delivery's ``tag`` names the received message and the session that holds it; ``ack`` and
``release`` of a delivery whose session is gone are refused, which is these brokers' fencing.

Delays are not the transport's: messages not due yet wait in the outbox table until a
worker's relay publishes them, so ``publish`` only ever sees due messages, and a retry's
``requeue`` holds the new message there in the transaction that acks the delivery.
"""

from __future__ import annotations

import abc
import contextlib
import datetime as dt
import itertools
import os
import threading
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, ClassVar, Generic, Protocol, TypeVar
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit

from django.db import transaction

from .. import clock, outbox
from ..exceptions import BrokerUnreachable, ConfigurationError
from ..message import Message
from .base import Broker, Delivery, Purged, QueueCounts

#: The most messages a consuming process holds unacked (``prefetch=`` in the URL).
DEFAULT_PREFETCH = 64


def our_options(url: str, names: Sequence[str]) -> tuple[SplitResult, dict[str, str], str]:
    """``url`` split: its parts, the query options of ours among ``names``, and the rest of
    the query (for the client library), encoded again."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    ours = {key: value for key, value in query if key in names}
    return parts, ours, urlencode([(key, value) for key, value in query if key not in names])


def prefetch_option(ours: dict[str, str]) -> int:
    """The URL's ``prefetch=`` (``DEFAULT_PREFETCH`` when absent), checked."""
    text = ours.get("prefetch") or str(DEFAULT_PREFETCH)
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ConfigurationError("TASKS_BROKER_URL: prefetch= must be a whole number from 1 to "
                                 f"65535, not {text!r}.")
    return int(text)


class Session(Protocol):
    """One connection and channel of one thread."""

    lock: threading.RLock
    #: The queues it consumes (a consumer's), in the order asked.
    queues: tuple[str, ...]

    def usable(self) -> bool:
        """Open, in the process that opened it."""

    def ack(self, raws: Sequence[Any]) -> None:
        """Ack messages received on this channel."""

    def reject(self, raw: Any) -> None:
        """Hand one message received on this channel back to its queue."""

    def close(self) -> None:
        """Drop the connection (in a forked child: only this process's copy of it)."""


class SessionBase:
    """What every session here has: its connection and channel, opened in this process, a
    lock, the queues it declared and consumes, and the messages received but not handed
    out yet (a consumer's)."""

    def __init__(self, connection: Any) -> None:
        self.pid = os.getpid()
        self.connection = connection
        self.channel: Any = connection.channel()
        self.lock = threading.RLock()
        self.open = True
        self.declared: set[str] = set()
        self.queues: tuple[str, ...] = ()
        self.buffer: deque[tuple[str, Any]] = deque()

    def received(self, queue: str, message: Any) -> None:
        self.buffer.append((queue, message))


S = TypeVar("S", bound=Session)


class ChannelBroker(Broker, Generic[S]):
    """The sessions, settling, fencing and inspection of a broker whose deliveries belong to
    the session (connection and channel) that received them: a publishing and a consuming
    session per thread. A subclass connects (:meth:`_connect`), declares a queue on a
    session and starts consuming (:meth:`_consume`), publishes on a session
    (:meth:`_publish_on`), receives, and counts or purges a queue on the server
    (:meth:`_queue_op`)."""

    #: What the broker is called in errors ("AMQP broker").
    kind: ClassVar[str] = "broker"
    #: The error raised when it cannot be reached; its message names the masked URL.
    unreachable: ClassVar[type[BrokerUnreachable]] = BrokerUnreachable
    #: The client library's exceptions that mean the connection is lost or refused.
    lost: ClassVar[tuple[type[BaseException], ...]] = (OSError,)

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self._password = urlsplit(url).password or ""  # hidden in errors (``_errors``)
        self._local = threading.local()
        self._tags = itertools.count(1)
        self._held: dict[int, tuple[Session, Any]] = {}
        self._held_lock = threading.Lock()
        #: The queues this process declared: ``depths()`` without names counts them.
        self._known: set[str] = set()

    @contextlib.contextmanager
    def _errors(self, session: Session | None = None) -> Iterator[None]:
        """Turn a lost or refused connection into :attr:`unreachable`, naming the (masked)
        URL; the session it happened on is dropped."""
        try:
            yield
        except self.lost as exc:
            if session is not None:
                session.close()
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            if self._password:
                reason = reason.replace(self._password, "**")
            raise self.unreachable(f"Cannot reach the {self.kind} at {self.describe()} "
                                   f"({type(exc).__name__}: {reason})") from None

    @abc.abstractmethod
    def _connect(self) -> S:
        """A new session; raises :attr:`unreachable`."""

    @abc.abstractmethod
    def _consume(self, session: S, queues: Sequence[str]) -> None:
        """Declare ``queues`` on ``session`` and consume them there."""

    @abc.abstractmethod
    def _publish_on(self, session: S, messages: Sequence[Message]) -> None:
        """Publish ``messages`` on ``session``; raises :attr:`unreachable`."""

    def _publisher(self) -> tuple[S, bool]:
        """This thread's publishing session, and whether it was opened just now."""
        session: S | None = getattr(self._local, "publisher", None)
        if session is not None and session.usable():
            return session, False
        self._local.publisher = session = self._connect()
        return session, True

    def _consumer(self, queues: Sequence[str]) -> S:
        """This thread's consuming session on ``queues``."""
        session: S | None = getattr(self._local, "consumer", None)
        if session is not None and session.usable() and session.queues == tuple(queues):
            return session
        if session is not None:  # other queues: what it received goes back
            session.close()
        session = self._connect()
        with self._errors(session):
            self._consume(session, queues)
        self._local.consumer = session
        return session

    def publish(self, messages: Sequence[Message]) -> None:
        if not messages:
            return
        session, fresh = self._publisher()
        try:
            self._publish_on(session, messages)
        except self.unreachable:
            if fresh:
                raise
            session, _ = self._publisher()  # the old connection went stale: once more
            self._publish_on(session, messages)

    def _hold(self, session: Session, raw: Any) -> int:
        """The tag of a delivery of ``raw``, received on ``session``, held until settled."""
        tag = next(self._tags)
        with self._held_lock:
            self._held[tag] = (session, raw)
        return tag

    # -- settling: a delivery is settled on the channel that received it -------------------

    def _take(self, deliveries: Iterable[Delivery]) -> list[tuple[Delivery, Session, Any]]:
        """The deliveries still held on an open channel, forgotten here."""
        found = []
        with self._held_lock:
            for d in deliveries:
                held = self._held.pop(d.tag, None)
                if held is not None and held[0].usable():
                    found.append((d, *held))
        return found

    def _settle(self, deliveries: Iterable[Delivery], how: str) -> list[Delivery]:
        by_session: dict[Session, list[tuple[Delivery, Any]]] = {}
        for delivery, session, raw in self._take(deliveries):
            by_session.setdefault(session, []).append((delivery, raw))
        done = []
        for session, held in by_session.items():
            try:
                with session.lock:
                    if how == "ack":
                        session.ack([raw for _, raw in held])
                    else:
                        for _, raw in held:
                            session.reject(raw)
            except Exception:  # noqa: BLE001 - the channel is gone: the server redelivers
                session.close()
                continue
            done += [delivery for delivery, _ in held]
        return done

    def ack(self, deliveries: Iterable[Delivery]) -> list[Delivery]:
        return self._settle(deliveries, "ack")

    def release(self, deliveries: Iterable[Delivery], *, count: bool = False) -> int:
        """Reject with requeue. ``count`` cannot be honoured: a server that counts
        deliveries counts every return, others mark every one ``redelivered``."""
        return len(self._settle(deliveries, "reject"))

    def confirm(self, deliveries: Sequence[Delivery], lease: float) -> list[Delivery]:
        with self._held_lock:
            return [d for d in deliveries
                    if d.tag in self._held and self._held[d.tag][0].usable()]

    def requeue(self, delivery: Delivery, message: Message, delay: float) -> bool:
        """Hold the new message in the outbox until due and ack the delivery, in one
        transaction: an ack refused rolls the held row back."""
        eta = clock.now() + dt.timedelta(seconds=max(delay, 0))
        try:
            with transaction.atomic(using=self.home_alias):
                outbox.hold([message.replace(eta=eta)], self.home_alias)
                if not self.ack([delivery]):
                    raise _Refused
        except _Refused:
            return False
        return True

    def record_start(self, delivery: Delivery) -> bool:
        return True  # runs are not counted here: the poison limit counts deliveries

    def renew(self, owners: Sequence[str], lease: float) -> int:
        return 0

    def release_owner(self, owner: str, *, keep_count: Iterable[int] = (),
                      count_all: bool = False, died_running: Iterable[int] = ()) -> int:
        return 0  # the server hands back what a closed channel held

    # -- inspection ----------------------------------------------------------------------

    @abc.abstractmethod
    def _queue_op(self, queue: str, op: str) -> int:
        """``op`` "depth": the messages ready in ``queue`` on the server (0 where it does
        not exist); "purge": delete them, and return how many went."""

    def depths(self, queues: Sequence[str] | None = None) -> dict[str, int]:
        """Messages ready in each queue (not those delivered and unacked); without
        ``queues``, the non-empty queues this process has declared."""
        names = list(queues) if queues is not None else sorted(self._known)
        counts = {name: self._queue_op(name, "depth") for name in names}
        return counts if queues is not None else {q: n for q, n in counts.items() if n}

    def queue_counts(self, queues: Sequence[str] = ()) -> dict[str, QueueCounts]:
        """Ready: the server's count of each queue (one round trip per queue, of ``queues``
        and those this process declared). Delayed: the outbox rows held for the queue until
        due (one query). In flight: not known: the server does not tell a client how many
        messages its consumers hold unacked, and what a worker holds includes what its
        channel was sent ahead."""
        held = {queue: n for queue, (_, n) in outbox.waiting(self.home_alias).items() if n}
        named = set(queues)
        counts = {}
        for queue in sorted(named | self._known | set(held)):
            ready = self._queue_op(queue, "depth")
            if ready or queue in named or queue in held:
                counts[queue] = QueueCounts(ready, held.get(queue, 0), None)
        return counts

    def purge(self, queue: str) -> Purged:
        """Messages not delivered yet only (the server counts them; their ids are not
        known)."""
        return Purged(self._queue_op(queue, "purge"))

    def close(self) -> None:
        """Drop this thread's connections (after ``fork``: the parent's are only forgotten;
        at shutdown: what a consumer received and did not ack goes back to the queue)."""
        for name in ("consumer", "publisher"):
            session: Session | None = self._local.__dict__.pop(name, None)
            if session is not None:
                session.close()
        with self._held_lock:
            self._held = {t: h for t, h in self._held.items() if h[0].usable()}


class _Refused(Exception):
    """An ack refused inside ``requeue``'s transaction: roll the held row back."""
