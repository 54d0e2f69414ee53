"""The broker contract, small enough to read in one screen.

A broker moves encoded messages between producers and workers, with leases:

* ``publish`` puts messages on their queues; those with an ``eta`` stay invisible until due.
* ``fetch`` leases up to ``limit`` due messages to ``owner`` (one consuming process) for
  ``lease`` seconds and raises each one's delivery count. Every claim gets a new ``token``.
* ``renew`` extends every lease an owner holds; a lease runs out only when its owner stops
  renewing (killed, frozen, cut off), and the message is then delivered again.
* ``ack`` removes finished messages; ``release`` hands messages back at once (optionally
  without counting the delivery); ``requeue`` hands one back after a delay.

Fencing: ``ack``, ``release``, ``requeue`` and ``confirm`` act only on a message whose current
lease is the one the delivery was given (its ``tag`` and ``token``). A worker that froze past
its lease, or lost the database for longer, may come back holding deliveries that another
worker has claimed since; whatever it then writes for them is refused, and each method says
what it did so that the caller can log the rest and drop their outcomes.
"""

from __future__ import annotations

import abc
import datetime as dt
import functools
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from ..message import Message

if TYPE_CHECKING:
    from .buckets import RateBuckets


@dataclass(frozen=True, slots=True)
class Delivery:
    """One leased message: ``tag`` identifies it to the broker, ``body`` is the envelope.

    ``token`` names this lease: each claim of a message gets a new one, so a write made
    under an old claim can be told from one made under the current claim.
    ``task_id`` is the id the broker stored beside the body, where it keeps one: it lets the
    worker record a FAILURE for a body that does not decode.
    ``envelope``, where a broker has the envelope decoded already (AMQP puts it together from
    a message's headers and JSON body), is that envelope, and ``body`` the message's body as
    the broker received it: :meth:`message` reads the envelope instead of parsing text again.
    """

    tag: int
    body: str
    queue: str
    deliveries: int
    owner: str
    task_id: str = ""
    token: int = 0
    #: Times the message was known to be running when its process or worker died.
    runs: int = 0
    envelope: dict[str, Any] | None = field(default=None, compare=False, repr=False)
    #: When the lease this process took ends by its own clock (Unix seconds; 0: unknown),
    #: so that a broker may trust a lease it took moments ago without asking (``confirm``).
    leased_until: float = field(default=0.0, compare=False, repr=False)
    #: The broker looked up the state stored for ``task_id`` as it claimed the message
    #: (``fetch(look=...)``): ``stored_state`` is it, None where no row exists.
    looked_up: bool = field(default=False, compare=False, repr=False)
    stored_state: str | None = field(default=None, compare=False, repr=False)

    def message(self) -> Message:
        """The message delivered; :class:`~django_tasks.exceptions.DecodeError` says why
        one cannot be read."""
        if self.envelope is not None:
            return Message.from_envelope(self.envelope)
        return Message.decode(self.body)


@dataclass(frozen=True, slots=True)
class QueueCounts:
    """The messages of one queue, by where they stand; ``None`` where the broker cannot know.

    ``ready``: due, waiting for a worker (one whose lease ran out, its worker gone, too).
    ``delayed``: not due yet (a countdown, an eta, a retry's backoff, a rate limit's wait).
    ``in_flight``: leased to a worker, or held unacknowledged by one, right now.
    """

    ready: int
    delayed: int | None
    in_flight: int | None

    @property
    def total(self) -> int:
        """Every message counted (those not known left out)."""
        return self.ready + (self.delayed or 0) + (self.in_flight or 0)


@dataclass(frozen=True, slots=True)
class Purged:
    """What ``Broker.purge()`` deleted: how many messages, and their task ids where the
    broker can tell (``None`` on RabbitMQ, which only counts them)."""

    count: int
    task_ids: tuple[str, ...] | None = None


#: A delayed message published to come due within this many seconds wakes an idle consumer
#: as a due one does, so that it asks when the message comes due (``Broker.next_due``): an
#: idle worker looks on its own about once a second, and learns of later ones then.
WAKE_AHEAD_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a broker can do. The worker and the publishing path read these flags; they
    never look at a broker's class."""

    #: Deliveries are leased to an owner: ``renew`` extends an owner's leases and
    #: ``release_owner`` hands back what a dead owner held. A broker without leases gives a
    #: dead consumer's deliveries back by itself (AMQP: when its channel closes), and then a
    #: redelivered message whose outcome is already final is acked without running.
    leases: bool = True
    #: The broker keeps messages with an ``eta`` until they are due.
    native_delays: bool = True
    #: The broker counts deliveries and runs of each message (for the poison limit).
    delivery_counts: bool = True
    #: Higher priorities are handed out first within a queue.
    priorities: bool = True
    #: ``publish`` writes into the caller's database transaction (``database_alias``), so a
    #: message is visible at commit and gone on rollback; other brokers go through the
    #: outbox when a transaction is open.
    transactional: bool = False
    #: Messages can be sent to every worker at once (the control channel).
    broadcast: bool = False
    #: Messages outlive the process that published them. A broker that is not durable
    #: (``memory://``, for tests) publishes at once, even inside a transaction: there is no
    #: other process an outbox row could be handed to.
    durable: bool = True
    #: A fetch or an ack can be sent now and its answer read later (``start_fetch``,
    #: ``start_ack``): a consumer running a batch of quick tasks sends the next batch's
    #: fetch before the batch ends, and runs its next batch while the last one's ack is on
    #: its way.
    pipelined: bool = False


def new_token() -> int:
    """A lease token: random, so that no two claims of one message ever share one."""
    return secrets.randbits(62) + 1


class Broker(abc.ABC):
    capabilities: ClassVar[Capabilities] = Capabilities()
    #: The database a transactional broker writes to; None for the others.
    database_alias: str | None = None
    #: The most unacked deliveries the broker sends a consumer ahead (RabbitMQ's prefetch),
    #: where only acks let more come; None where a consumer takes what it asks for.
    window: int | None = None
    #: How long after its timeout a ``wait`` may end: a consumer expecting a message to come
    #: due sooner than this sleeps instead of waiting to be woken.
    wait_lateness: float = 0.0

    def sent_ahead(self) -> int | None:
        """How many unacked deliveries the broker sends the calling thread's consumer ahead
        now (``window``, or less while the consumer's window grows); None where a consumer
        takes what it asks for. A consumer settles its batch each time half of this has
        run, so that the next messages are on their way while it runs the rest."""
        return self.window

    @property
    def home_alias(self) -> str:
        """Where the app's own tables live beside this broker: liveness rows, schedules."""
        return self.database_alias or "default"

    def __init__(self, url: str) -> None:
        self.url = url

    @abc.abstractmethod
    def publish(self, messages: Sequence[Message]) -> None: ...

    def publish_once(self, keyed: Sequence[tuple[str, Message]]) -> None:
        """Publish each message unless one was published under the same key before (an
        outbox row published again after its publisher died). A broker that cannot tell
        publishes again: the worker acks a copy whose task already finished, unrun."""
        self.publish([message for _, message in keyed])

    def start_publish(self, messages: Sequence[Message]) -> Callable[[], None]:
        """:meth:`publish` begun: return the function that ends it and raises what
        ``publish`` would. A broker that can leaves the messages on their way meanwhile
        (``publish_chunked`` writes the next batch's PENDING rows while Redis queues this
        one); the default publishes before it returns. The caller calls the function in
        any case, errors of its own included."""
        self.publish(messages)
        return _published

    def publish_batch(self) -> int:
        """How many messages ``publish_chunked`` hands over at once."""
        return 1000

    def publish_with_pending(self, messages: Sequence[Message]) -> bool:
        """Publish and write the messages' PENDING result rows in one statement, where the
        broker can and the results live beside it; False where the caller must write them
        separately (the default)."""
        return False

    @abc.abstractmethod
    def fetch(self, queues: Sequence[str], owner: str, limit: int, lease: float, *,
              look: str | None = None) -> list[Delivery]:
        """Lease up to ``limit`` due messages of ``queues`` to ``owner`` for ``lease``
        seconds, highest priority first.

        ``look``: where the result store shares the broker's database, its SQL for the state
        stored for a task id (``ResultStore.state_lookup()``); a broker that can, reads it
        in the statement that claims, and marks each delivery ``looked_up``, sparing the
        worker its own look. Others ignore it."""

    @abc.abstractmethod
    def ack(self, deliveries: Iterable[Delivery]) -> list[Delivery]:
        """Remove these messages; return the deliveries acked (their lease was current)."""

    def start_ack(self, deliveries: Sequence[Delivery]) -> Callable[[], list[Delivery]]:
        """:meth:`ack` begun: return the function that ends it, returning the deliveries
        acked and raising what ``ack`` would. A broker that can leaves the ack on its way
        meanwhile (where ``capabilities.pipelined``: the consumer runs its next batch while
        Redis acks the last); the default acks before it returns. Call the function in any
        case."""
        acked = self.ack(deliveries)
        return lambda: acked

    @abc.abstractmethod
    def release(self, deliveries: Iterable[Delivery], *, count: bool = False) -> int:
        """Make these messages deliverable now; ``count=False`` undoes their delivery count.

        Returns how many were released; a message whose lease has moved on is left alone."""

    @abc.abstractmethod
    def release_owner(self, owner: str, *, keep_count: Iterable[int] = (),
                      count_all: bool = False, died_running: Iterable[int] = ()) -> int:
        """Release everything ``owner`` holds (it died or stopped); return how many.

        Deliveries whose tag is in ``keep_count`` keep their count (they had started), and
        all of them do with ``count_all``; the others are handed back uncounted. Those in
        ``died_running`` were running when their process died: their ``runs`` go up.
        """

    @abc.abstractmethod
    def record_start(self, delivery: Delivery) -> bool:
        """Note, before it runs, that a message delivered before is starting (its ``runs``
        go up: should it take its process down again, the poison limit knows); False if
        the delivery's lease is no longer current."""

    @abc.abstractmethod
    def requeue(self, delivery: Delivery, message: Message, delay: float) -> bool:
        """Replace the delivered message with ``message``, deliverable after ``delay`` s;
        False (nothing done) if the delivery's lease is no longer current."""

    def defer(self, delivery: Delivery, message: Message, delay: float) -> bool:
        """Hand the delivery back unrun as ``message`` (the same task, its headers changed),
        deliverable after ``delay`` s: this delivery is not counted and its runs are kept
        (a rate-limited task waiting for its slot). False if the lease is no longer current.

        A broker that cannot keep the counts requeues the message: a new one, counted
        afresh (AMQP, where it waits in the outbox until due)."""
        return self.requeue(delivery, message, delay)

    def rate_buckets(self) -> RateBuckets:
        """The shared buckets of rate-limited tasks that fit this broker (``buckets.py``):
        rows in the database by default."""
        from .buckets import DatabaseBuckets

        buckets: RateBuckets | None = self.__dict__.get("_rate_buckets")
        if buckets is None:
            buckets = self.__dict__["_rate_buckets"] = DatabaseBuckets(self.home_alias)
        return buckets

    @abc.abstractmethod
    def renew(self, owners: Sequence[str], lease: float) -> int: ...

    def ack_statement(self, deliveries: Sequence[Delivery]) -> tuple[str, list[Any]] | None:
        """Where the broker lives in the database: one SQL statement, with its parameters,
        that acks every delivery, or fewer where a lease moved on, and returns a row per
        message acked (a ``DELETE … RETURNING``), for the result store to run as part of
        the statement that stores their outcomes; None where it has none for this batch."""
        return None

    @abc.abstractmethod
    def confirm(self, deliveries: Sequence[Delivery], lease: float) -> list[Delivery]:
        """Extend these leases by ``lease`` seconds from now; return the deliveries whose
        lease was still current (the others belong to someone else now)."""

    def start_fetch(self, queues: Sequence[str], owner: str, limit: int, lease: float, *,
                    look: str | None = None) -> PendingFetch:
        """:meth:`fetch` begun: where ``capabilities.pipelined``, the request is sent now
        and the answer read by :meth:`PendingFetch.result`; the default fetches when the
        result is asked for. The leases run from the time it was sent."""
        return _FetchLater(functools.partial(self.fetch, queues, owner, limit, lease,
                                             look=look))

    def wait(self, queues: Sequence[str], timeout: float, *,
             accept: Callable[[str], bool] | None = None) -> bool | None:
        """Block up to ``timeout`` seconds until a message may be ready on ``queues``: True
        when woken (fetch again), False on timeout, None where this broker cannot wake a
        consumer (it polls instead). Called by a consumer whose last fetch was empty.

        ``accept``: where every waiting process hears each wake-up (PostgreSQL's
        ``NOTIFY``), a wake-up's payload it refuses does not wake this one (a sibling
        takes it); a broker that wakes one waiter per message (Redis) ignores it."""
        return None

    def next_due(self, queues: Sequence[str], since: dt.datetime) -> float | None:
        """Seconds from now until the first message of ``queues`` that becomes ready after
        ``since`` does (a delayed message comes due, or a lease runs out; negative if that
        was after ``since`` but is past now), or None when there is none or the broker cannot
        tell. A consumer asks this after a fetch that began at ``since`` found nothing, so
        that an idle worker looks again then, not on its next idle turn up to a second
        later (``worker/idle.py``)."""
        return None

    def stop_waiting(self) -> None:  # noqa: B027 - optional hook
        """Stop collecting wake-ups (a consumer that stays busy calls this, so that none pile
        up unread); the next ``wait`` starts again."""

    @abc.abstractmethod
    def depths(self, queues: Sequence[str] | None = None) -> dict[str, int]: ...

    @abc.abstractmethod
    def queue_counts(self, queues: Sequence[str] = ()) -> dict[str, QueueCounts]:
        """Ready, delayed and in-flight messages of each queue in ``queues`` (zeros for an
        empty one) and of every other queue the broker finds messages in, in as few round
        trips as the broker allows. A count the broker cannot know is ``None``."""

    @abc.abstractmethod
    def purge(self, queue: str) -> Purged:
        """Delete every message of ``queue`` (those a worker holds too, where the broker
        can); what was deleted."""

    def ping(self) -> bool:
        """Whether the broker answers (raises or returns False if not). A broker in a
        database is asked through its database connection instead."""
        return True

    def close(self) -> None:  # noqa: B027 - optional hook
        """Drop connections (after ``fork``, at shutdown)."""

    def describe(self) -> str:
        """The URL with any password hidden, for banners and logs."""
        from ..conf import mask_url

        return mask_url(self.url)


class PendingFetch(Protocol):
    """A fetch on its way (:meth:`Broker.start_fetch`)."""

    def ready(self) -> bool:
        """Whether to read the answer now: it has come, or waiting longer gains nothing
        (the fetch failed: ``result()`` raises, or sends it again)."""

    def result(self) -> list[Delivery]:
        """The deliveries, waiting for the answer if need be; raises what ``fetch`` would.
        Call it once, in any case: the connection is held until then."""


class _FetchLater:
    """A fetch made when its result is asked for."""

    def __init__(self, fetch: Callable[[], list[Delivery]]) -> None:
        self._fetch = fetch

    def ready(self) -> bool:
        return True

    def result(self) -> list[Delivery]:
        return self._fetch()


def _published() -> None:
    """:meth:`Broker.start_publish`'s end of a publish already done."""
