"""Settling deliveries: outcome first, then the ack, fenced by the lease, and never lost.

A :class:`Settler` belongs to one consumer and knows every delivery that consumer has run or
given up but not yet settled. It writes a batch of settlements in one transaction where the
broker and the result store share a database (the ack first, so that only outcomes whose
lease is still current are stored), and otherwise confirms the leases, stores the outcomes
and acks. What it cannot write it keeps, so that nothing the consumer holds is forgotten:

* the database does not answer: the whole batch waits in the backlog, the consumer takes no
  new work, and the backlog is written as soon as the database answers again;
* the database answers but refuses one settlement (an outcome it cannot store): each is
  written on its own, and the one that fails ends as a FAILURE naming the reason, or, when
  not even that can be stored, is acked with the reason logged. Its batch-mates are written
  as they are and never run again.

Where the broker is ``pipelined`` (Redis), the consumer's settler leaves each batch's ack on
its way and reads its answer at the next settlement (``finish``): the consumer runs its next
batch meanwhile. Until then those deliveries count as run and unsettled (the slot lists
them); an answer that failed is handled as a failed write of the batch.

A settlement whose lease has moved on (the worker froze, or lost the database for longer
than the lease, and another worker claimed the message) is refused by the broker: its
outcome is dropped and the refusal logged. A final state in the result store is never
replaced (see ``results/base.py``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from django.db import InterfaceError, OperationalError, connections, transaction

from .. import clock, states
from ..brokers.base import Broker, Delivery
from ..exceptions import EncodeError
from ..process import connections as worker_connections
from ..result import TaskOutcome, exception_to_result

if TYPE_CHECKING:
    from ..message import Message
    from ..results.base import ResultStore

logger = logging.getLogger("django_tasks.worker")
_TRIES = 3


@dataclass(slots=True)
class Settlement:
    """How one delivery ends: acked with its outcome, or requeued for a retry."""

    delivery: Delivery
    outcome: TaskOutcome | None = None
    retry: Message | None = None
    retry_delay: float = 0.0
    #: Acked before the task ran (``acks_late=False``): only the outcome is left to write.
    acked: bool = False
    label: str = ""
    #: Messages to publish with the outcome (callbacks, a chain's next link, a chord's
    #: callback; ``kernel.Run.follow_up``). Written in the transaction that stores the
    #: outcome and acks where the broker shares the result store's database; else after
    #: the outcome is stored and before the ack (so a worker that dies between the two
    #: publishes them again when the message runs again: at least once).
    follow_up: tuple[Message, ...] = ()
    #: Called in the same transaction with the result store, after the outcome is stored;
    #: each returns more messages to publish (``followups.Continuation``: a chord member
    #: counted, its callback when it is the last; ``kernel.Run.on_settle``).
    on_settle: tuple[Callable[..., Sequence[Message]], ...] = ()
    #: The run's outcome for the per-minute counters (``results/counters.py``) where it
    #: differs from ``outcome``: an ``ignore_result`` success is counted, not stored.
    tally: TaskOutcome | None = None
    #: ``retry`` is the same task deferred unrun until this time (Unix seconds; a rate
    #: limit's slot): handed back uncounted with ``Broker.defer``, not requeued as a new
    #: attempt. A time, not a delay: the settlement may be written a while after it is made.
    defer_until: float | None = None
    #: Its outcome, count and follow-ups are committed; only the ack is left (a broker
    #: outside the database that did not take the ack: written again, they would count
    #: the run twice on the dashboard).
    recorded: bool = False


def shared_alias(broker: Broker, store: ResultStore | None) -> str | None:
    """The database alias to write outcomes and acks in one transaction, when the broker
    and the result store both live there; else None."""
    alias = broker.database_alias
    if store is not None and broker.capabilities.transactional and alias is not None \
            and store.database_alias == alias:
        return alias
    return None


def answers(broker: Broker, store: ResultStore | None) -> bool:
    """Whether the broker's and the result store's databases answer a trivial query (and a
    broker outside the database its ping)."""
    if broker.database_alias is None:
        try:
            if not broker.ping():
                return False
        except Exception:  # noqa: BLE001 - any failure means: not now
            return False
    aliases = {a for a in (broker.database_alias,
                           store.database_alias if store is not None else None) if a}
    for alias in aliases:
        connection = connections[alias]
        try:
            if connection.connection is not None and not connection.is_usable():
                connection.close()
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
        except Exception:  # noqa: BLE001 - any failure means: not now
            worker_connections.close_all()
            return False
    return True


def unstorable(settlement: Settlement, error: BaseException) -> Settlement:
    """A FAILURE that stands in for an outcome the result store refused."""
    outcome = settlement.outcome
    label = settlement.label or (outcome.task_id if outcome else "")
    exc = EncodeError(f"The outcome of task {label} could not be stored: "
                      f"{type(error).__name__}: {error}")
    substitute = None
    if outcome is not None and outcome.task_id:
        substitute = TaskOutcome(
            task_id=outcome.task_id, task_name=outcome.task_name, state=states.FAILURE,
            result=exception_to_result(exc), traceback=f"EncodeError: {exc}",
            queue=outcome.queue, worker=outcome.worker, attempts=outcome.attempts,
            retries=outcome.retries, started_at=outcome.started_at,
            date_done=outcome.date_done)
    return replace(settlement, outcome=substitute, retry=None, retry_delay=0.0, follow_up=(),
                   tally=None)


class Settler:
    """Writes one consumer's settlements; keeps what it cannot write yet."""

    def __init__(self, broker: Broker, store: ResultStore | None, lease: float,
                 on_change: Callable[[list[int]], None] | None = None, *,
                 overlap_acks: bool = False) -> None:
        self.broker = broker
        self.store = store
        self.lease = lease
        self._alias = shared_alias(broker, store)
        self.backlog: list[Settlement] = []
        self.handback: list[Delivery] = []
        self._on_change = on_change or (lambda tags: None)
        self._outage_logged = False
        #: ``settle`` leaves a batch's ack on its way where the broker can (``start_ack``);
        #: ``finish`` (or the next ``settle``) reads its answer.
        self._overlap = overlap_acks
        self._in_flight: tuple[list[Settlement], Callable[[], list[Delivery]]] | None = None

    @property
    def waiting(self) -> bool:
        """Something could not be written yet: take no new work before it is."""
        return bool(self.backlog or self.handback)

    def unsettled_tags(self, pending: Iterable[Settlement] = ()) -> list[int]:
        flying = self._in_flight[0] if self._in_flight is not None else ()
        return [s.delivery.tag for s in (*self.backlog, *flying, *pending) if not s.acked]

    # -- the public operations ----------------------------------------------------------

    def settle(self, batch: Sequence[Settlement]) -> None:
        """Write ``batch``; what the database cannot take now joins the backlog."""
        self.finish(batch)
        if not batch:
            return
        for attempt in range(_TRIES):
            try:
                self._write(batch, overlap=self._overlap)
                break
            except Exception as exc:  # noqa: BLE001 - sorted out below
                if transient(exc) and attempt + 1 < _TRIES and answers(self.broker, self.store):
                    time.sleep(0.05 * 2 ** attempt)  # a lock, a busy database: again
                    continue
                self._after_failure(list(batch), exc)
                break
        self._on_change(self.unsettled_tags())

    def hand_back(self, deliveries: Sequence[Delivery], *, count: bool = False) -> None:
        """Release deliveries that did not start; kept for later if the database is away."""
        if not deliveries:
            return
        try:
            self.broker.release(deliveries, count=count)
        except Exception as exc:  # noqa: BLE001 - kept, released when the database answers
            self._outage(exc, len(deliveries), "hand back")
            self.handback.extend(deliveries)

    def finish(self, pending: Sequence[Settlement] = ()) -> None:
        """Read the answer to the ack left on its way, if any: the refused are logged, and
        a batch whose ack failed is written again (kept, if the broker does not answer).
        ``pending``: settlements about to be written, still listed as unsettled."""
        flight, self._in_flight = self._in_flight, None
        if flight is None:
            return
        batch, end = flight
        try:
            acked = {d.tag for d in end()}
        except Exception as exc:  # noqa: BLE001 - as a failed write of the batch
            self._after_failure(batch, exc)
        else:
            self.refused([s for s in batch if s.delivery.tag not in acked])
        self._on_change(self.unsettled_tags(pending))

    def retry(self) -> bool:
        """Write what was kept; True when nothing is left."""
        self.finish()
        if self.handback:
            held, self.handback = self.handback, []
            self.hand_back(held)
        if self.backlog and not self.handback:
            kept, self.backlog = self.backlog, []
            self.settle(kept)
        if not self.waiting and self._outage_logged:
            logger.warning("The %s answers again: everything kept meanwhile is written",
                           self._away)
            self._outage_logged = False
        return not self.waiting

    # -- writing --------------------------------------------------------------------------

    def _write(self, batch: Sequence[Settlement], *, overlap: bool = False) -> None:
        if self._alias is not None:
            if self._write_alone(batch):
                return
            with transaction.atomic(using=self._alias):
                kept = self._settle_leases(batch)
                self._record(kept)
            return
        early = [s for s in batch if s.acked]
        unacked = [s.delivery for s in batch if not s.acked]
        if self.store is None and not _follows(batch):
            current = {d.tag for d in unacked}  # nothing is written first: the ack fences
        else:
            current = {d.tag for d in self.broker.confirm(unacked, self.lease)}
        live = [s for s in batch if not s.acked and s.delivery.tag in current]
        self.refused([s for s in batch if not s.acked and s.delivery.tag not in current])
        # The outcomes, a chord's count and the follow-ups commit together (follow-ups for a
        # broker outside the database go to the outbox in this transaction), before the ack:
        # a worker that dies before the commit sends nothing; after it, the message is final
        # and is acked without running again, so nothing is sent twice.
        store_alias = self.store.database_alias if self.store is not None else None
        fresh = [s for s in (*early, *live) if not s.recorded]
        # Without follow-ups the store stores and counts all or nothing by itself (on
        # PostgreSQL in one statement, with no BEGIN and COMMIT round trips).
        alone = self.store is not None and not _follows(fresh)
        with transaction.atomic(using=store_alias) if store_alias and not alone \
                else nullcontext():
            self._record(fresh, lazy=alone)
        if alone and self.store is not None:
            # Written lazily (seen at once, on disk a moment later): on disk before the ack.
            # A flush that fails leaves them unrecorded: written again, never acked unsure.
            self.store.flush()
        for s in fresh:  # committed: trying the ack again must not write them again
            s.recorded = True
        alias = self.broker.database_alias
        scope = transaction.atomic(using=alias) \
            if self.broker.capabilities.transactional and alias else nullcontext()
        with scope:
            if overlap and live and all(s.retry is None for s in live) \
                    and self.broker.capabilities.pipelined:
                self._in_flight = (live, self.broker.start_ack([s.delivery for s in live]))
            else:
                self._settle_leases(live)

    def _write_alone(self, batch: Sequence[Settlement]) -> bool:
        """The usual batch where broker and results share the database (every message
        acked now, with its outcome, and nothing more to publish or do): its ack, outcomes
        and counts in one statement of the result store, all or nothing. False when the
        batch is not such a batch, or a lease moved on or a row is missing (nothing is
        written then): the caller writes it in a transaction, ack first."""
        if self.store is None or any(s.acked or s.retry is not None for s in batch) \
                or _follows(batch):
            return False
        ack = self.broker.ack_statement([s.delivery for s in batch])
        if ack is None or not self.store.store_alone(_stored(batch), _counted(batch), ack,
                                                     lazy=True):
            return False
        # Ack and outcomes went together: seen at once, on disk before this process goes on
        # (the flush counts the runs too). A flush that fails changes nothing of that (a
        # crash that loses them loses both, and the task runs again): the batch is settled,
        # not written again, and only its counts are lost.
        try:
            self.store.flush()
        except Exception as exc:  # noqa: BLE001 - the next query finds the connection gone
            logger.warning("Cannot count %d settled run(s) on the dashboard: %s: %s",
                           len(batch), type(exc).__name__, exc)
        return True

    def _settle_leases(self, batch: Sequence[Settlement]) -> list[Settlement]:
        """Ack or requeue each delivery under its lease; return the settlements whose lease
        was current (and those acked before they ran), logging the refused ones."""
        acks = [s for s in batch if not s.acked and s.retry is None]
        acked = {d.tag for d in self.broker.ack([s.delivery for s in acks])} if acks else set()
        kept = [s for s in batch if s.acked]
        # Acked before running, so there is no message to requeue: the retry is a new one,
        # published the way every message is, beside its RETRY row.
        retries = [s.retry for s in kept if s.retry is not None]
        if retries:
            from ..publishing import publish_many

            publish_many(retries, pending_rows=False)
        refused: list[Settlement] = []
        for s in acks:
            (kept if s.delivery.tag in acked else refused).append(s)
        for s in batch:
            if s.retry is not None and not s.acked:
                if s.defer_until is not None:
                    done = self.broker.defer(s.delivery, s.retry,
                                             s.defer_until - clock.now().timestamp())
                else:
                    done = self.broker.requeue(s.delivery, s.retry, s.retry_delay)
                (kept if done else refused).append(s)
        self.refused(refused)
        return kept

    def _record(self, batch: Sequence[Settlement], *, lazy: bool = False) -> None:
        """Store the batch's outcomes, publish its follow-ups and count its runs, in the
        caller's transaction; without follow-ups the store may store and count at once
        (``lazy``: the caller flushes the store before it acks)."""
        if self.store is None:
            self._follow_up(batch)
        elif _follows(batch):
            # Counted last in the transaction, so that the counter rows every worker adds
            # to stay locked for the shortest time.
            if stored := _stored(batch):
                self.store.store_outcomes(stored)
            self._follow_up(batch)
            if counted := _counted(batch):
                self.store.count_outcomes(counted)
        else:
            self.store.store_and_count(_stored(batch), _counted(batch), lazy=lazy)

    def _follow_up(self, batch: Sequence[Settlement]) -> None:
        """Publish the follow-up messages of the settlements whose lease was current."""
        messages = [m for s in batch if s.follow_up for m in s.follow_up]
        actions = sorted((a for s in batch for a in s.on_settle),
                         key=lambda a: str(getattr(a, "key", "")))
        for action in actions:  # chord rows locked in one order: no deadlock between workers
            messages += action(self.store)
        if messages:
            from ..publishing import publish_many

            publish_many(messages)

    def refused(self, refused: Sequence[Settlement]) -> None:
        for s in refused:
            state = s.outcome.state if s.outcome is not None else "no outcome"
            logger.warning(
                "Task %s: this worker's lease on it is no longer current (it stopped renewing "
                "it, frozen or cut off from the database, and the message went to another "
                "worker); this run's outcome (%s) is discarded.", s.label or s.delivery.tag,
                state)

    # -- when a write fails -----------------------------------------------------------------

    def _after_failure(self, batch: list[Settlement], error: Exception) -> None:
        if not answers(self.broker, self.store):
            self._outage(error, len(batch), "record")
            self.backlog.extend(batch)
            return
        if len(batch) > 1:
            logger.warning("Cannot record %d outcomes together (%s: %s); recording each on "
                           "its own", len(batch), type(error).__name__, error)
        for index, settlement in enumerate(batch):
            for attempt in range(_TRIES):
                try:
                    self._write([settlement])
                except Exception as exc:  # noqa: BLE001 - this one, or the database again
                    if not answers(self.broker, self.store):
                        self._outage(exc, len(batch) - index, "record")
                        self.backlog.extend(batch[index:])
                        return
                    if not transient(exc):
                        self._write_instead(settlement, exc)
                    elif attempt + 1 < _TRIES:
                        time.sleep(0.05 * 2 ** attempt)
                        continue
                    else:  # it keeps failing for a passing reason: keep it for later
                        self._outage(exc, 1, "record")
                        self.backlog.append(settlement)
                break

    def _write_instead(self, settlement: Settlement, error: Exception) -> None:
        """The database answers, yet refuses this settlement: end it another way."""
        label = settlement.label or settlement.delivery.tag
        logger.error("Cannot record the outcome of task %s (%s: %s); it is recorded as "
                     "FAILURE instead", label, type(error).__name__, error)
        substitute = unstorable(settlement, error)
        for attempt in (substitute, replace(substitute, outcome=None)):
            try:
                self._write([attempt])
                if attempt.outcome is None:
                    logger.error("Rejected task %s: no outcome of it can be stored; its "
                                 "message was acked", label)
                return
            except Exception as exc:  # noqa: BLE001 - try the next, plainer way
                error = exc
        try:  # counted: if it always comes to this, the delivery limit ends it
            if not settlement.acked:
                self.broker.release([settlement.delivery], count=True)
            logger.error("Cannot settle task %s at all (%s: %s); its message goes back to "
                         "the queue, counted as a delivery", label, type(error).__name__,
                         error)
        except Exception as exc:  # noqa: BLE001 - keep it; tried again later
            self._outage(exc, 1, "settle")
            self.backlog.append(settlement)

    @property
    def _away(self) -> str:
        """What an outage is an outage of, for the log."""
        return "database" if self.broker.database_alias is not None else "broker or database"

    def _outage(self, error: BaseException, count: int, what: str) -> None:
        worker_connections.close_all()
        if not self._outage_logged:
            logger.warning(
                "Cannot %s %d message(s): the %s does not answer (%s: %s). They are "
                "kept, and written when it answers again; this process takes no new tasks "
                "meanwhile.", what, count, self._away, type(error).__name__, error)
            self._outage_logged = True


def pause(failures: int) -> float:
    """Back-off before trying an unreachable database again: 0.2 s doubling to 5 s."""
    return min(0.1 * 2 ** max(failures, 1), 5.0)


def transient(error: BaseException) -> bool:
    """An error that says "not now" (a lost connection, a lock) rather than "not this".

    ``ConnectionError``: a broker that is not a database (Redis) went away."""
    return isinstance(error, OperationalError | InterfaceError | ConnectionError)


def _follows(batch: Sequence[Settlement]) -> bool:
    """Whether some settlement publishes more messages, or acts, with its outcome."""
    return any(s.follow_up or s.on_settle for s in batch)


def _stored(batch: Sequence[Settlement]) -> list[TaskOutcome]:
    """The outcomes to store: those with an id (an unreadable message may have none)."""
    return [s.outcome for s in batch if s.outcome is not None and s.outcome.task_id]


def _counted(batch: Sequence[Settlement]) -> list[TaskOutcome]:
    """The runs to count: each settlement's tally, or its outcome."""
    return [o for s in batch if (o := s.tally or s.outcome) is not None]
