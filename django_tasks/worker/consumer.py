"""The loop each pool process (or thread) runs: fetch a batch, run it, record, ack.

Every consuming process fetches and acks its own batches; nothing passes through a single
dispatcher, so throughput grows with processes. Batches start at one message and double
while tasks are quick, and drop back to one after a slow task; messages fetched but not yet
started are handed back when a batch has been held longer than ``HOLD_SECONDS``, so a long
task never keeps short ones waiting behind it.

The consumer knows every message it holds: those of its batch not started yet, the one it
runs, and those it ran whose settlement is not written yet (the :class:`Settler` keeps those
until the database takes them). While anything is kept, it takes no new work; and whatever
it holds is what its supervisor renews.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
from collections.abc import Sequence
from typing import Protocol

from .. import clock
from ..brokers.base import Delivery
from ..calling import utcnow
from ..conf import get_broker, get_result_store, task_settings
from ..message import printable
from ..process import connections
from . import limits
from .ahead import AHEAD_BATCH, AHEAD_SECONDS, Ahead
from .alone import Alone
from .execute import Prepared, check, execute, prepare
from .hooks import worker_kernel
from .idle import LookTurns
from .ratelimit import DueTimes
from .recycle import Recycler
from .settle import Settlement, Settler, answers, pause, shared_alias
from .slots import Slot

logger = logging.getLogger("django_tasks.worker")

HOLD_SECONDS = 1.0
FLUSH_SECONDS = 0.02
SLOW_TASK_SECONDS = 0.5
#: An idle worker on a broker that wakes it looks at its queues no more often than this.
IDLE_FETCH_SECONDS = 1.0
#: A consumer whose fetches found messages for this long stops listening for wake-ups.
BUSY_SECONDS = 1.0
#: How often a consumer waiting to be woken looks at its stop flag.
WAIT_SLICE_SECONDS = 0.25
#: A consumer whose fetches alternate with tasks asks when a message comes due no more often
#: than this (a trickle of tasks would otherwise cost a query each). One woken for a message
#: it did not find, or that took the time it was given, asks every time.
ASK_DUE_SECONDS = 0.25
#: A consumer told that a message comes due looks this long after (clocks differ a little
#: between processes and servers; a look a moment early finds nothing and asks again).
DUE_MARGIN_SECONDS = 0.002


class StopFlag(Protocol):
    def is_set(self) -> bool: ...
    def wait(self, timeout: float | None = None) -> bool: ...


class DatabaseAway(Exception):
    """The database stopped answering in the middle of a batch: hand back what is left."""


class Consumer:
    def __init__(self, *, queues: Sequence[str], owner: str, hostname: str, prefetch: int,
                 lease: float, stop: StopFlag, slot: Slot | None = None,
                 hard_limit_in_thread: bool = True, recycler: Recycler | None = None,
                 turns: LookTurns | None = None, alone: Alone | None = None) -> None:
        self.queues = list(queues)
        self.owner = owner
        self.hostname = hostname
        self.prefetch = max(1, prefetch)
        self.lease = lease
        self.stop = stop
        self.slot = slot or Slot()
        # prefork's supervisor kills a process past its hard limit; other pools raise it
        self.hard_limit_in_thread = hard_limit_in_thread
        self.recycler = recycler or Recycler()
        self.broker = get_broker()
        self.store = get_result_store()
        self.settler = Settler(self.broker, self.store, lease, on_change=self.slot.ran,
                               overlap_acks=True)
        # Sharing a database, the broker looks up stored states as it claims (``prepare``).
        self._look = self.store.state_lookup() \
            if self.store is not None and shared_alias(self.broker, self.store) else None
        self._default_limits: tuple[float | None, float | None] = (None, None)
        self._task_seconds = 0.0  # a task's run time here, smoothed
        self._pending: list[Settlement] = []  # the batch's settlements not written yet
        self.due = DueTimes()  # when messages this consumer deferred come due
        self.kernel = worker_kernel(self)
        self.turns = turns or LookTurns()
        self.alone = alone  # shared by the consumers of a process that has several
        self._poll = float(task_settings.POLL_INTERVAL)
        self._wakes: bool | None = None  # whether the broker can wake this consumer
        self._asked_at = -ASK_DUE_SECONDS  # when this consumer last asked for next_due
        self._woken = True  # its last wait ended on a wake-up: ask if the fetch finds none
        self._took_due = False  # it took the time the broker gave: ask after, found or not
        self._batch = 1  # how many messages the next fetch asks for
        self._ahead: Ahead | None = None  # the next batch's fetch, sent early (``ahead.py``)
        self._unanswered = False  # a fetch sent ahead was handed back unread: release first
        self._short = False  # the batch running is all its fetch found

    def _stopping(self) -> bool:
        return self.stop.is_set() or self.recycler.triggered.is_set()

    def run(self) -> None:
        self._batch, failures = 1, 0
        busy_since: float | None = None
        while not self._stopping():
            if self.settler.waiting:  # settle what is kept before taking anything new
                connections.refresh()
                if not self.settler.retry():
                    failures += 1
                    self.stop.wait(pause(failures))
                    continue
            try:
                connections.refresh()
                if failures or self._unanswered:
                    self._unanswered = False
                    self.settler.finish()  # its ack first: those messages are settled
                    self._release_unanswered()
                fetched_at, since = time.monotonic(), clock.now()
                ahead, self._ahead = self._ahead, None
                if ahead is not None:
                    fetched_at, since, self._batch = ahead.sent_at, ahead.since, ahead.asked
                    deliveries = ahead.result()
                else:
                    deliveries = self.broker.fetch(self.queues, self.owner, self._batch,
                                                   self.lease, look=self._look)
                self.slot.mark()
                if failures:
                    logger.warning("The broker answers again, after %d failed fetches",
                                   failures)
                failures = 0
            except Exception as exc:  # noqa: BLE001 - the broker may be briefly away
                failures += 1
                # Once per outage at WARNING; each retry after that at DEBUG.
                logger.log(logging.WARNING if failures == 1 else logging.DEBUG,
                           "Cannot fetch from the broker (%s); retrying with back-off (%.1fs "
                           "now), and logging again when it answers", exc, pause(failures))
                connections.close_all()
                self.stop.wait(pause(failures))
                continue
            if not deliveries:
                busy_since = None
                self._idle(since)
                continue
            self._woken = False  # the wake-up found its message
            self.turns.found_work()
            if busy_since is None:
                busy_since = fetched_at
            elif fetched_at - busy_since > BUSY_SECONDS:
                # Busy for a while: stop collecting wake-ups nobody reads until the queues
                # run dry (a short spell keeps listening: no round trip between tasks).
                self.broker.stop_waiting()
            asked = self._batch
            # A fetch that took all there was sends none ahead: the consumer waits to be woken.
            self._short = len(deliveries) < asked
            slow = self.process(deliveries, fetched_at)
            if slow:  # after a slow task the next batch is one message: not one fetched ahead
                self._return_ahead()
            self._batch = 1 if slow else min(self._batch * 2, self.prefetch,
                                             self._batch_that_fits())
            if len(deliveries) < asked and not slow and self._ahead is None \
                    and self._dry_when_short():
                # The fetch took all there was: wait as after an empty fetch, rather than
                # claim again at once (an empty claim after every task, on the CPUs the
                # publisher shares, cost a round trip on PostgreSQL 0.25 ms).
                busy_since = None
                self._idle(since)
        self._return_ahead()
        self._settle_kept()
        self._write_counts(force=True)

    def _release_unanswered(self) -> None:
        """After a failed fetch, before the next: hand back, uncounted, whatever the broker
        leased to this process.

        The fetch may have leased messages whose answer never came (the broker stopped, or
        the connection broke, after it took them). The heartbeat renews every lease this
        process's name holds, so they would stay with a live process that does not know
        of them. Between batches a consumer holds nothing (what it could not settle is
        written before it fetches), so everything its name holds is such a message.
        """
        if not self.broker.capabilities.leases:
            return  # the broker returns them when the failed connection closes
        released = self.broker.release_owner(self.owner)
        if released:
            logger.warning("%d message(s) leased by a fetch whose answer was lost went back "
                           "to the queue", released)

    def _expect_due(self, since: dt.datetime) -> None:
        """After a fetch begun at ``since`` found nothing, ask the broker when its next
        delayed message comes due (or a lease runs out), so that the worker looks again then
        (``idle.py``). Asked after a wake-up or due time that found nothing, and otherwise
        at most every ``ASK_DUE_SECONDS``: a delayed message published meanwhile comes due
        after the next ask, or wakes the worker (``WAKE_AHEAD_SECONDS``)."""
        now = time.monotonic()
        if not (self._woken or self._took_due) and now - self._asked_at < ASK_DUE_SECONDS:
            return
        self._asked_at, self._took_due = now, False
        try:
            seconds = self.broker.next_due(self.queues, since)
        except Exception as exc:  # noqa: BLE001 - the idle turns find it instead
            logger.debug("Cannot ask the broker when a message comes due (%s)", exc)
            return
        self.turns.expect(None if seconds is None
                          else time.monotonic() + max(seconds, 0.0) + DUE_MARGIN_SECONDS)

    def _wait_for_work(self) -> None:
        """After an empty fetch, wait for this consumer's turn to look again (``idle.py``:
        the consumers of a worker take turns, so an idle worker asks once per pause however
        many processes it has), or for the broker to say that a message is ready. Waits in
        slices, so that a stop is noticed."""
        wakes = self._wakes is True
        longest = IDLE_FETCH_SECONDS if wakes else self._poll
        self.turns.found_nothing(longest, double=not wakes)
        self._woken = False
        while not self._stopping():
            self._write_counts()
            wait = self.turns.take(longest)
            if wait <= 0:
                return
            due = self.due.seconds()  # a message this consumer deferred comes due
            if due is not None and due <= 0:
                return
            expected = self.turns.take_due()  # one the broker said comes due
            if expected is not None and expected <= 0:
                self._took_due = True
                return
            soon = min((s for s in (due, expected) if s is not None), default=None)
            wait = min(wait, WAIT_SLICE_SECONDS, WAIT_SLICE_SECONDS if soon is None else soon)
            # Waiting for its turn is progress: the stall watch and the readiness probe must
            # not take a process that other processes' looks stand in for as stuck (the one
            # that looks, and hangs, stops marking).
            self.slot.mark()
            late = self.broker.wait_lateness
            if soon is not None and late and self._wakes is not False:
                if soon <= late:  # the broker's wait could end too late: sleep instead
                    self.stop.wait(soon)
                    continue
                wait = min(wait, soon - late)
            if self._wakes is False:
                self.stop.wait(wait)
                continue
            try:
                woken = self.broker.wait(self.queues, wait, accept=self._share)
            except Exception as exc:  # noqa: BLE001 - the next fetch reports and backs off
                logger.debug("Waiting for messages failed (%s)", exc)
                connections.close_all()
                return
            if woken is None:  # this broker cannot wake us: poll, in turns
                self._wakes = False
                longest = self._poll
                continue
            self._wakes = True
            if woken:
                self._woken = True
                return

    def _idle(self, since: dt.datetime) -> None:
        """The queues ran dry at a fetch begun at ``since``: learn when the next delayed
        message comes due, then wait for work."""
        self.settler.finish()  # the last batch's ack: nothing waits unanswered while idle
        self._expect_due(since)
        self._wait_for_work()

    def _settle_every(self) -> float:
        """Settle after this many runs, where the broker sends no more until it has acks
        (half its window, which may grow between batches: asked once a batch); elsewhere
        by time alone."""
        window = self.broker.sent_ahead()
        return max(1, window // 2) if window else math.inf

    def _dry_when_short(self) -> bool:
        """Whether a fetch that brought fewer messages than it asked for left none ready:
        where the broker hands a consumer what it asks for (no ``window`` of deliveries sent
        ahead, which RabbitMQ fills while the batch runs) and wakes it for what comes
        later (a publish's wake-up is heard even while the consumer is busy)."""
        return self.broker.window is None and self._wakes is True

    def _share(self, payload: str) -> bool:
        """Whether to claim for a publish's wake-up that the worker's other idle consumers
        hear too (``idle.py``): they share its messages out, a batch each."""
        return self.turns.share(payload, self._batch)

    def _batch_that_fits(self) -> int:
        """How many messages this process can run in ``HOLD_SECONDS``: no more are held, so
        that few wait unstarted (and few count as delivered if the whole worker dies)."""
        return max(1, int(HOLD_SECONDS / max(self._task_seconds, 1e-4)))

    def _write_counts(self, force: bool = False) -> None:
        """Add the runs the result store kept back to the counters, when they are due (or
        ``force``, stopping); a database that refuses now is asked again at the next idle
        slice. Counts are statistics: what a stopping worker cannot write is lost."""
        if self.store is None:
            return
        try:
            self.store.write_kept(force)
        except Exception as exc:  # noqa: BLE001 - the database may be briefly away
            logger.log(logging.WARNING if force else logging.DEBUG,
                       "Cannot add the runs of settled tasks to the counters (%s)%s", exc,
                       "; they are lost" if force else "; trying again")

    def _settle_kept(self) -> None:
        """Stopping: write what is kept while the database lets us (a cold shutdown ends
        the wait; the supervisor then hands the messages back)."""
        failures = 0
        self.settler.finish()
        while self.settler.waiting and not self.settler.retry():
            failures += 1
            time.sleep(pause(failures))

    def process(self, deliveries: Sequence[Delivery], fetched_at: float | None = None) -> bool:
        """Run one batch; return True if a task in it was slow (or it ended early)."""
        deliveries = self._isolate_suspect(deliveries)
        if fetched_at is not None and time.monotonic() - fetched_at > self.lease / 3:
            deliveries = self._still_held(deliveries)  # the fetch itself took long: frozen?
        self._default_limits = limits.defaults()  # settings read once a batch, not a task
        try:
            prepared = prepare(deliveries, self.store)
        except Exception as exc:  # noqa: BLE001 - the database went away, or a bug of ours
            logger.warning("Cannot look up a batch of %d in the result store (%s); handing it "
                           "back", len(deliveries), exc)
            self.settler.hand_back(deliveries)
            return True
        pending: list[Settlement] = []
        started = last_flush = time.monotonic()
        settle_every = self._settle_every()  # the window changes only at a fetch
        slow = False
        ahead = self.broker.capabilities.pipelined and len(prepared) >= AHEAD_BATCH \
            and not self._short
        self.slot.hold([(p.delivery.tag, p.delivery.token, p.delivery.deliveries)
                        for p in prepared], [p.readable_id or "" for p in prepared])
        try:
            for index, item in enumerate(prepared):
                if index and (self._stopping() or time.monotonic() - started > HOLD_SECONDS):
                    self._flush(pending)
                    self._hand_back_rest(prepared, index)
                    return True
                if ahead:
                    ahead = self._fetch_ahead(len(prepared) - index)
                if not self.slot.take(index):  # given back while a long task ran
                    continue
                try:
                    took = self._handle(item, pending)
                except DatabaseAway:
                    self._flush(pending)
                    self._hand_back_rest(prepared, index + 1, item)
                    return True
                except Exception:
                    logger.exception("Unexpected error while handling %s; its message goes "
                                     "back to the queue, counted as a delivery", _label(item))
                    self.settler.hand_back([item.delivery], count=True)
                    continue
                slow = slow or took > SLOW_TASK_SECONDS
                if time.monotonic() - last_flush > FLUSH_SECONDS or (
                        len(pending) >= settle_every):
                    self._flush(pending)
                    last_flush = time.monotonic()
        finally:
            if self._ahead is not None:
                self._ahead.unlist(self.slot)
            self.slot.hold([])
        self._flush(pending)
        return slow

    def _fetch_ahead(self, rest: int) -> bool:
        """Before a task, with ``rest`` of the batch (this one included) not started: send
        the next batch's fetch once they are expected to take ``AHEAD_SECONDS`` or less, or
        read its answer if it has come (``ahead.py``). False: no more of this for the batch
        (the fetch could not be sent)."""
        if self._ahead is not None:
            self._ahead.look(self.slot)
            return True
        if rest * self._task_seconds > AHEAD_SECONDS or self._stopping() \
                or self.settler.waiting:
            return True
        asked = min(self._batch * 2, self.prefetch, self._batch_that_fits())
        try:
            pending = self.broker.start_fetch(self.queues, self.owner, asked, self.lease,
                                              look=self._look)
        except Exception as exc:  # noqa: BLE001 - the fetch after the batch reports it
            logger.debug("Cannot send the next fetch ahead (%s)", exc)
            return False
        self._ahead = Ahead(pending, asked)
        return True

    def _return_ahead(self) -> None:
        """Hand back, uncounted, what a fetch sent ahead leased to this consumer (stopping,
        or after a slow task). If its answer cannot be read, what this consumer's name holds
        is released before its next fetch (once what it kept is settled), as after a failed
        fetch; a consumer that stops leaves that to its supervisor, or to the leases' end."""
        ahead, self._ahead = self._ahead, None
        if ahead is None:
            return
        try:
            deliveries = ahead.result()
        except Exception as exc:  # noqa: BLE001 - see above
            logger.debug("Cannot read the fetch sent ahead (%s)", exc)
            self._unanswered = True
            return
        self.settler.hand_back(deliveries)

    def _hand_back_rest(self, prepared: Sequence[Prepared], start: int,
                        current: Prepared | None = None) -> None:
        """Hand back the batch from ``start`` on (and ``current``, which did not start),
        leaving out what the supervisor gave back already."""
        rest = [prepared[i].delivery for i in self.slot.take_rest(start, len(prepared))]
        self.settler.hand_back(([current.delivery] if current else []) + rest)

    def _isolate_suspect(self, deliveries: Sequence[Delivery]) -> Sequence[Delivery]:
        """Run a message that was delivered before without being settled on its own.

        Its last holder died or froze, perhaps because of it. Whatever else this process
        held while it ran would be counted as delivered too if it kills this process as well,
        and could end as a poison message without ever having run; so the rest of the batch
        goes back to the queue, uncounted, first.
        """
        # Without leases a hand-back counts too (a quorum queue counts every return): it
        # would cost the rest of the batch what the suspect's crash would, every time.
        if len(deliveries) < 2 or not self.broker.capabilities.leases:
            return deliveries
        suspect = next((d for d in deliveries if d.deliveries > 1), None)
        if suspect is None:
            return deliveries
        self.settler.hand_back([d for d in deliveries if d is not suspect])
        return [suspect]

    def _still_held(self, deliveries: Sequence[Delivery]) -> Sequence[Delivery]:
        """Deliveries whose lease is still this process's (extended now); the rest are
        dropped unrun: another worker has them."""
        try:
            held = self.broker.confirm(deliveries, self.lease)
        except Exception as exc:  # noqa: BLE001 - nothing is run on a lease not confirmed
            logger.warning("Cannot confirm the leases of a batch of %d (%s); handing it back",
                           len(deliveries), exc)
            self.settler.hand_back(deliveries)
            return []
        if len(held) < len(deliveries):
            logger.warning("%d message(s) of a batch fetched %.0fs ago went to another worker "
                           "meanwhile; they are not run here", len(deliveries) - len(held),
                           self.lease / 3)
        return held

    def _handle(self, item: Prepared, pending: list[Settlement]) -> float:
        """Check a delivery, and run it through the kernel: what happens before, around and
        after the task (acks_late, track_started, time limits, the slot, signals, the
        task's handlers, recycling, recording) are the kernel's hooks (``hooks.py``). Its
        settlement joins ``pending``; return how long the task took."""
        settlement = check(item, self.hostname)
        if settlement is not None:
            self._keep(settlement, pending)
            return 0.0
        self._pending = pending  # the hooks that flush before a task write these first
        if self.alone is None:
            began = time.monotonic()
            settlement = execute(item, self.kernel, self.hostname)
        elif item.delivery.deliveries > 1:
            with self.alone.alone():
                began = time.monotonic()
                settlement = execute(item, self.kernel, self.hostname)
                if settlement is not None:
                    # Written before another suspect may start in this process: if that
                    # one takes the process down, this one has not run in vain, nor is it
                    # counted as running at that death (towards its own poison limit).
                    took = self._ran(settlement, began)
                    self._keep(settlement, pending)
                    self._flush(pending)
                    return took
        else:
            with self.alone.beside():
                began = time.monotonic()
                settlement = execute(item, self.kernel, self.hostname)
        if settlement is None:
            return 0.0
        self._keep(settlement, pending)
        return self._ran(settlement, began)

    def _keep(self, settlement: Settlement, pending: list[Settlement]) -> None:
        """``settlement`` is written with the next flush; until then the slot lists it as
        run and unsettled (what the supervisor acts on if this process dies)."""
        pending.append(settlement)
        if not settlement.acked:
            self.slot.ran_add(settlement.delivery.tag)

    def _ran(self, settlement: Settlement, began: float) -> float:
        """Count a task that ran; return how long it took."""
        took = time.monotonic() - began
        self.slot.count(failed=settlement.outcome is not None
                        and settlement.outcome.state == "FAILURE")
        self._task_seconds = took if not self._task_seconds else \
            0.8 * self._task_seconds + 0.2 * took
        return took

    def _record_start(self, item: Prepared) -> bool:
        """A message delivered before without being settled is about to run (alone): note it
        in the broker first, so that if it takes this process down too, the poison limit
        counts it. False if the lease is no longer this process's."""
        try:
            if self.broker.record_start(item.delivery):
                return True
        except Exception as exc:
            self._away(exc)
            raise  # a bug of ours, if the database answers
        self.settler.refused([Settlement(item.delivery, label=_label(item))])
        return False

    def _mark_started(self, item: Prepared) -> None:
        from ..result import TaskOutcome

        message = item.message
        assert message is not None and self.store is not None
        try:
            self.store.mark_started([TaskOutcome(
                task_id=message.id, task_name=message.task, state="STARTED",
                args=message.args, kwargs=message.kwargs, queue=message.queue,
                worker=self.hostname, attempts=item.delivery.deliveries,
                retries=message.retries, started_at=utcnow())])
        except Exception as exc:  # noqa: BLE001 - STARTED is a courtesy; the run is not
            self._away(exc)
            logger.warning("Cannot record %s as STARTED (%s)", _label(item), exc)

    def _away(self, exc: Exception) -> None:
        """Raise :class:`DatabaseAway` if the database stopped answering."""
        if not answers(self.broker, self.store):
            raise DatabaseAway(str(exc)) from exc

    def _flush(self, pending: list[Settlement]) -> None:
        """Store outcomes, then ack (result before ack), emptying ``pending``."""
        if pending:
            self.settler.settle(pending)
            pending.clear()


def _label(item: Prepared) -> str:
    if item.message is not None:
        return printable(f"{item.message.task}[{item.message.id}]")
    return printable(f"message {item.delivery.tag}"
                     + (f" [{item.readable_id}]" if item.readable_id else ""))
