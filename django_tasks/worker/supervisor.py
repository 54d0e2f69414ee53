"""The one supervision loop every pool runs, and the contract of a pool.

Every ``TICK`` the supervisor reaps consumers that died (handing back what they held: the
deliveries they had started count one delivery, the others none) and replaces them, enforces
hard time limits, and, every heartbeat, renews the leases of the live consumers and records
the worker as alive. Shutdown comes in two steps. The first SIGTERM/SIGINT is a warm shutdown
(stop fetching, let running tasks finish within ``shutdown_timeout``); a second signal, or the
end of that time, is a cold one (running tasks are stopped and their messages go back to the
queue at once).
"""

from __future__ import annotations

import abc
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from ..brokers.base import Delivery
from ..conf import get_broker
from ..process import connections
from ..process.signals import Signals
from ..process.stall import Entry, StallWatch
from . import heartbeat, limits
from .consumer import HOLD_SECONDS
from .idle import LookTurns
from .settle import Settlement, Settler
from .slots import Held, Running, Slot

if TYPE_CHECKING:
    from ..result import TaskOutcome
    from .main import Worker

logger = logging.getLogger("django_tasks.worker")
TICK = 0.1
#: How long a thread may go on past its hard limit before the whole worker exits.
HARD_LIMIT_GRACE = 2.0
#: Exit status after a task that could not be stopped at its hard limit (threads, solo).
EXIT_STUCK = 3


class Pool(abc.ABC):
    """The consumers of one worker, as the supervisor drives them."""

    def __init__(self, worker: Worker, signals: Signals) -> None:
        self.worker = worker
        self.signals = signals
        # Shared by the consumers (allocated before any fork): they take turns to look at
        # idle queues, so an idle worker asks as often with one process as with many.
        self.turns = LookTurns()
        self.started_at = time.time()
        #: Set by a control command to act once its reply is written (``shutdown``).
        self.after_reply: Callable[[], object] | None = None

    @abc.abstractmethod
    def start(self) -> None:
        """Start the consumers."""

    @abc.abstractmethod
    def owners(self) -> list[str]:
        """The lease owners of the live consumers: what the heartbeat renews."""

    @abc.abstractmethod
    def entries(self) -> Iterable[Entry]:
        """What the stall watchdog reads: (who, last progress, running task)."""

    @abc.abstractmethod
    def check(self, *, respawn: bool) -> None:
        """Reap dead consumers (replacing them if ``respawn``); enforce hard limits."""

    @abc.abstractmethod
    def warm(self) -> None:
        """Stop fetching; running tasks finish."""

    @abc.abstractmethod
    def cold(self) -> None:
        """Stop now: running tasks are stopped, their messages handed back."""

    @abc.abstractmethod
    def alive(self) -> bool:
        """Whether any consumer still runs."""

    # -- what the control channel asks (control/handlers.py) ---------------------------------

    def consumer_slots(self) -> list[tuple[Slot, int]]:
        """Each consumer's slot, with the pid of the process it runs in."""
        return []

    def totals(self) -> tuple[int, int]:
        """Tasks the consumers ran, and failed, since the worker started."""
        counts = [slot.totals() for slot, _ in self.consumer_slots()]
        return sum(done for done, _ in counts), sum(failed for _, failed in counts)

    def terminate(self, task_id: str, signum: int) -> Running | None:
        """Stop task ``task_id`` if a consumer runs it (it ends REVOKED); what it was."""
        return None

    def resize(self, delta: int) -> int:
        """Add (or retire, gracefully) consumers; the new size."""
        raise ValueError(f"the {self.worker.pool} pool has one consumer; it cannot be "
                         "resized")

    def reconfigure(self) -> None:
        """Consumers take up ``worker.queues`` and the tasks' rate limits as they are now."""
        return None

    def watch(self) -> StallWatch:
        return StallWatch(self.worker.stall_timeout, self.entries,
                          health_file=self.worker.health_file, hostname=self.worker.hostname)


def supervise(pool: Pool, watch: StallWatch) -> None:
    """Run ``pool`` until it has no consumer left."""
    worker, sigs = pool.worker, pool.signals
    if heartbeat.beat(worker, pool.owners(), pool.totals()):
        watch.beat_ok()
    next_beat = time.monotonic() + worker.heartbeat
    next_relay = time.monotonic()
    deadline: float | None = None
    from ..control.server import ControlServer

    control = ControlServer(pool)
    while pool.alive():
        time.sleep(max(0.0, min(TICK, next_relay - time.monotonic())) if deadline is None
                   else TICK)
        if sigs.count and deadline is None:
            deadline = time.monotonic() + worker.shutdown_timeout
            pool.warm()
        if sigs.count >= 2 or (deadline is not None and time.monotonic() > deadline):
            pool.cold()
            break
        pool.check(respawn=deadline is None)
        if time.monotonic() >= next_beat:
            if heartbeat.beat(worker, pool.owners(), pool.totals()):
                watch.beat_ok()
            next_beat = time.monotonic() + worker.heartbeat
        if deadline is None:
            control.serve()
        if deadline is None and time.monotonic() >= next_relay:
            wait = heartbeat.relay_outbox(get_broker())
            next_relay = time.monotonic() + wait


def owner_name(hostname: str, part: str) -> str:
    """A lease owner name for one consumer, new for each one started: a worker restarted
    under the same name (or with the same pids, in a container) must never renew or release
    the leases a dead predecessor left behind."""
    import secrets

    return f"{hostname[:200]}/{part}.{secrets.token_hex(4)}"


def give_back_waiting(owner: str, slot: Slot) -> None:
    """While a consumer runs one task for longer than ``HOLD_SECONDS``, hand the rest of its
    batch back to the broker, uncounted, so that idle consumers take them instead of letting
    them wait behind it (the prefetch trap). Only where deliveries are leased: an AMQP
    channel's deliveries belong to the process that received them."""
    running = slot.get()
    if running is None or time.time() - running.started < HOLD_SECONDS:
        return
    broker = get_broker()
    if not broker.capabilities.leases:
        return

    def release(held: list[Held]) -> None:
        broker.release([Delivery(tag, "", running.queue, count, owner, token=token)
                        for tag, token, count in held], count=False)

    try:
        given = slot.give_back(release)
    except Exception as exc:  # noqa: BLE001 - the consumer runs them itself instead
        logger.warning("Could not hand back the messages waiting behind %s (%s)",
                       running.label, exc)
        connections.close_all()
        return
    if given:
        logger.info("Handed back %d message(s) waiting behind %s, which has run for %.1f s, "
                    "for other processes to take", len(given), running.label,
                    time.time() - running.started)


def hand_back(owner: str, slot: Slot, *, running: Running | None = None) -> None:
    """Release what a consumer that stopped held: what it had started counts a delivery."""
    ran = slot.ran_tags()
    started = [running.tag] if running is not None else []
    # A message run alone because it was delivered before has its start recorded already.
    died = [running.tag] if running is not None and running.deliveries == 1 else []
    if ran is None:
        heartbeat.release(owner, count_all=True, died_running=died)
    else:
        heartbeat.release(owner, keep_count=[*started, *ran], died_running=died)


def record_exceeded(worker: Worker, running: Running, owner: str, what: str) -> None:
    """Record FAILURE (``TimeLimitExceeded``) for a task stopped from outside, and ack it
    under its lease (a lease lost meanwhile is refused, like any late write)."""
    outcome, exc = limits.exceeded_outcome(running, worker.hostname, what)
    _settle_from_outside(worker, running, owner, outcome)
    limits.announce_exceeded(running, exc)


def _settle_from_outside(worker: Worker, running: Running, owner: str,
                         outcome: TaskOutcome) -> None:
    """Store ``outcome`` for the task a process was stopped in, and ack it under its lease.
    Without leases the message is not ours to ack (it comes back when the child's channel
    closes); its outcome is final, so whoever receives it next acks it without running."""
    from .. import conf  # looked up at the call: tests put a broker of their own there

    get_broker, get_result_store = conf.get_broker, conf.get_result_store
    delivery = Delivery(running.tag, "", running.queue, running.deliveries, owner,
                        running.task_id, running.token)
    broker = get_broker()
    Settler(broker, get_result_store(), worker.lease).settle(
        [Settlement(delivery, outcome, label=running.label,
                    acked=not broker.capabilities.leases)])


def record_revoked(worker: Worker, running: Running, owner: str, what: str) -> None:
    """Record REVOKED for a task terminated from outside, and ack it under its lease."""
    import datetime as dt

    from .. import states
    from ..calling import utcnow
    from ..exceptions import TaskRevokedError
    from ..result import TaskOutcome, exception_to_result

    exc = TaskRevokedError(f"Task {running.label} was revoked and terminated: {what}.")
    logger.warning("%s", exc)
    outcome = TaskOutcome(
        task_id=running.task_id, task_name=running.task_name, state=states.REVOKED,
        result=exception_to_result(exc), traceback=f"{type(exc).__name__}: {exc}",
        queue=running.queue, worker=worker.hostname, attempts=running.deliveries,
        retries=running.retries, started_at=dt.datetime.fromtimestamp(running.started, dt.UTC),
        date_done=utcnow())
    _settle_from_outside(worker, running, owner, outcome)


def stuck(slots: Sequence[Slot]) -> int | None:
    """The index of a slot whose task runs well past its hard limit, although the limit was
    raised in its thread; None if none does."""
    now = time.monotonic()
    for index, slot in enumerate(slots):
        running = slot.get()
        if running and running.deadline and now > running.deadline + HARD_LIMIT_GRACE:
            return index
    return None


def exit_stuck(worker: Worker, slot: Slot, owner: str, owners: Sequence[str]) -> None:
    """A thread cannot be killed: record the task as failed, hand back the rest, and exit
    so that the process supervisor (systemd, Kubernetes) starts a fresh worker."""
    running = slot.get()
    if running is not None:
        record_exceeded(worker, running, owner,
                        "it did not stop (blocked outside Python, or it caught "
                        f"TimeLimitExceeded), so worker {worker.hostname} exits with "
                        f"status {EXIT_STUCK} to be restarted")
        logger.critical("Exiting: task %s could not be stopped at its hard time limit",
                        running.label)
    for each in owners:
        heartbeat.release(each)
    heartbeat.goodbye(worker)
    logging.shutdown()
    os._exit(EXIT_STUCK)


def leave_now(worker: Worker, owners: Sequence[str], message: str, code: int = 0) -> None:
    """Hand back everything and exit at once (threads cannot be interrupted)."""
    for owner in owners:
        heartbeat.release(owner)
    heartbeat.goodbye(worker)
    logger.warning("%s", message)
    logging.shutdown()
    connections.close_all()
    os._exit(code)
