"""The ``prefork`` pool: one forked process per consumer, supervised by the main process.

The main process starts no thread: its stall watchdog is a process too (see ``stall.py``),
forked first, so that every pool process is forked from a single-threaded parent. The slots
the children write are allocated before any fork and reused by a replacement.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..conf import get_broker
from ..process import connections
from ..process.children import die_with_parent
from ..process.stall import Entry
from . import heartbeat
from .consumer import Consumer
from .idle import LookTurns
from .recycle import Recycler
from .slots import Running, SharedSlot, Slot
from .supervisor import (
    Pool,
    Signals,
    give_back_waiting,
    hand_back,
    owner_name,
    record_exceeded,
    record_revoked,
)

if TYPE_CHECKING:
    from .main import Worker

logger = logging.getLogger("django_tasks.worker")
#: A task terminated with SIGTERM that is still running this long after is killed.
TERMINATE_GRACE = 3.0
#: How often a pool process looks for its parent, to stop once orphaned (on Linux the
#: kernel kills it with its parent anyway: ``die_with_parent``).
ORPHAN_CHECK_SECONDS = 0.1


class _Child:
    """A pool process: a consumer, or (``taskworker --beat``) the schedule loop."""

    def __init__(self, worker: Worker, index: int, slot: SharedSlot, turns: LookTurns, *,
                 beat: bool = False) -> None:
        ctx = multiprocessing.get_context("fork")
        self.index = index
        self.slot = slot
        self.beat = beat
        self.killed_for: Running | None = None  # killed at this task's hard limit
        self.revoked_for: Running | None = None  # terminated by a revoke
        self.revoke_deadline = 0.0  # monotonic: past it, SIGKILL
        self.retiring = False  # pool_shrink: not replaced when it exits
        slot.reset()
        self.owner = owner_name(worker.hostname, "beat" if beat else f"p{index}")
        connections.close_all()  # a forked child must not share the parent's sockets
        self.process = ctx.Process(
            target=_beat_main if beat else _child_main,
            args=(worker, slot, self.owner) if beat else (worker, slot, self.owner, turns),
            name="Beat" if beat else f"ForkPoolWorker-{index}", daemon=False)
        self.process.start()


def _child_setup(slot: SharedSlot) -> Any:
    """What every pool process does first; returns its stop flag."""
    from ..conf import reset_cache
    from ..process.logs import redirect_print

    die_with_parent()
    parent = os.getppid()
    stop = threading.Event()

    def term(signum: int, frame: Any) -> None:
        stop.set()  # a warm stop, and the process is replaced
        if slot.revoking():  # revoke(terminate=True): the task ends REVOKED
            from ..exceptions import TaskTerminated

            running = slot.get()
            raise TaskTerminated(f"Task {running.label if running else ''} was revoked "
                                   "and terminated (SIGTERM).")

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the terminal's ^C is for the parent
    signal.signal(signal.SIGTERM, term)
    signal.signal(signal.SIGUSR2, signal.SIG_DFL)  # the watchdog's signal is for the parent
    reset_cache()
    redirect_print()

    class Stop:
        checked = 0.0  # when the parent was last looked for

        def is_set(self) -> bool:
            """Stopping: told to, or orphaned (the parent looked for at most every
            ``ORPHAN_CHECK_SECONDS``: this is asked between any two tasks)."""
            if stop.is_set():
                return True
            now = time.monotonic()
            if now - self.checked < ORPHAN_CHECK_SECONDS:
                return False
            self.checked = now
            if os.getppid() != parent:
                stop.set()
            return stop.is_set()

        def wait(self, timeout: float | None = None) -> bool:
            return stop.wait(timeout)

    return Stop()


def _beat_main(worker: Worker, slot: SharedSlot, owner: str) -> None:
    from ..beat.main import embedded

    stop = _child_setup(slot)
    try:
        loop = embedded(worker.hostname, stop)
        loop.on_progress = slot.mark
        loop.run()
    finally:
        slot.finished()
        connections.close_all()


def _child_main(worker: Worker, slot: SharedSlot, owner: str, turns: LookTurns) -> None:
    stop = _child_setup(slot)
    from .. import signals

    signals.send(signals.worker_process_init, None)  # Celery's: in each pool process
    recycler = Recycler(worker.max_tasks_per_child, worker.max_memory_per_child)
    consumer = Consumer(queues=worker.queues, owner=owner,
                        hostname=worker.hostname, prefetch=worker.prefetch, lease=worker.lease,
                        stop=stop, slot=slot, hard_limit_in_thread=False, recycler=recycler,
                        turns=turns)
    try:
        consumer.run()
    finally:
        slot.finished()
        connections.close_all()
    if recycler.triggered.is_set():
        logger.info("Replacing %s: %s", multiprocessing.current_process().name,
                    recycler.reason)


class PreforkPool(Pool):
    def __init__(self, worker: Worker, signals: Signals) -> None:
        super().__init__(worker, signals)
        # Allocated before anything is forked: the watchdog process and every child see them.
        self.slots = [SharedSlot() for _ in range(worker.concurrency)]
        self.beat_slot = SharedSlot() if worker.beat else None
        self.children: dict[int, _Child] = {}

    def start(self) -> None:
        for index, slot in enumerate(self.slots):
            self.children[index] = _Child(self.worker, index + 1, slot, self.turns)
        if self.beat_slot is not None:
            self.children[-1] = _Child(self.worker, 0, self.beat_slot, self.turns, beat=True)

    def owners(self) -> list[str]:
        return [child.owner for child in self.children.values() if not child.beat]

    def entries(self) -> Iterable[Entry]:
        entries: list[Entry] = [(f"ForkPoolWorker-{index + 1}", slot.progress, slot.get())
                                for index, slot in enumerate(self.slots)]
        if self.beat_slot is not None:
            entries.append(("the beat process", self.beat_slot.progress, None))
        return entries

    def alive(self) -> bool:
        return bool(self.children)

    def warm(self) -> None:
        for child in self.children.values():
            _signal(child, signal.SIGTERM)

    def cold(self) -> None:
        for child in self.children.values():
            _signal(child, signal.SIGKILL)
        for child in self.children.values():
            child.process.join(timeout=5)
            heartbeat.release(child.owner)  # stopped by us: nothing counts a delivery
        self.children.clear()
        logger.warning("Cold shutdown: unfinished tasks returned to the queue")

    # -- control ------------------------------------------------------------------------------

    def _consumers(self) -> list[_Child]:
        return [c for c in self.children.values() if not c.beat and not c.retiring]

    def consumer_slots(self) -> list[tuple[Slot, int]]:
        return [(child.slot, child.process.pid or 0) for child in self._consumers()]

    def terminate(self, task_id: str, signum: int) -> Running | None:
        for child in self._consumers():
            running = child.slot.get()
            if running is None or running.task_id != task_id or child.revoked_for:
                continue
            child.revoked_for = running
            child.revoke_deadline = time.monotonic() + TERMINATE_GRACE
            child.slot.revoke_running(running.tag)
            logger.warning("Terminating task %s: %s to its process %s", running.label,
                           signal.Signals(signum).name, child.process.name)
            _signal(child, signum)
            return running
        return None

    def resize(self, delta: int) -> int:
        if delta > 0:
            for _ in range(delta):
                index = max([i for i in self.children if i >= 0] + [-1]) + 1
                slot = SharedSlot()  # not seen by the stall watchdog, forked before it
                self.slots.append(slot)
                self.children[index] = _Child(self.worker, index + 1, slot, self.turns)
        else:
            consumers = sorted(self._consumers(), key=lambda c: c.index)
            if len(consumers) + delta < 1:
                raise ValueError(f"the pool has {len(consumers)} process(es); it cannot "
                                 f"shrink by {-delta} (one must stay)")
            for child in consumers[delta:]:
                child.retiring = True
                _signal(child, signal.SIGTERM)  # finishes its task, then exits
        self.worker.concurrency = len(self._consumers())
        return self.worker.concurrency

    def reconfigure(self) -> None:
        """Replace each consumer process gracefully: a new one forks from this process's
        current queues and rate limits once the old one has finished its task."""
        for child in self._consumers():
            _signal(child, signal.SIGTERM)

    def check(self, *, respawn: bool) -> None:
        for index, child in list(self.children.items()):
            if child.process.is_alive():
                self._enforce_hard_limit(child)
                self._enforce_terminate(child)
                if not child.beat:
                    give_back_waiting(child.owner, child.slot)
                continue
            child.process.join()
            del self.children[index]
            self._reap(child)
            if child.retiring:
                child.slot.finished()
                self.slots = [s for s in self.slots if s is not child.slot]
                logger.info("Process %s retired (pool_shrink)", child.process.name)
            elif respawn:
                self.children[index] = _Child(self.worker, child.index, child.slot,
                                              self.turns, beat=child.beat)
            else:
                child.slot.finished()

    def _enforce_hard_limit(self, child: _Child) -> None:
        import time

        running = child.slot.get()
        if (running and running.deadline and time.monotonic() > running.deadline
                and child.killed_for is None):
            child.killed_for = running
            _signal(child, signal.SIGKILL)

    def _enforce_terminate(self, child: _Child) -> None:
        revoked = child.revoked_for
        if revoked is None or time.monotonic() < child.revoke_deadline:
            return
        running = child.slot.get()
        if running is not None and running.tag == revoked.tag:
            child.revoke_deadline = float("inf")
            _signal(child, signal.SIGKILL)

    def _reap(self, child: _Child) -> None:
        if child.process.exitcode != 0 and child.process.pid:
            heartbeat.release_outbox_claims(get_broker(), child.process.pid)
        if child.beat:
            if child.process.exitcode:
                logger.warning("The beat process exited (exit code %s); restarting it",
                               child.process.exitcode)
            return
        running = child.slot.get()
        code = child.process.exitcode
        name = child.process.name
        if running is not None and child.killed_for is not None \
                and running.tag == child.killed_for.tag:
            record_exceeded(self.worker, running, child.owner, f"its process {name} was killed")
            hand_back(child.owner, child.slot)
            return
        if running is not None and child.revoked_for is not None \
                and running.tag == child.revoked_for.tag:
            record_revoked(self.worker, running, child.owner, f"its process {name} was killed")
            hand_back(child.owner, child.slot)
            return
        if running is not None:
            how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
            logger.error("Process %s died (%s) while running task %s; it goes back to the "
                         "queue and counts as one delivery", name, how, running.label)
        elif code != 0:
            logger.warning("Process %s exited (exit code %s); restarting it", name, code)
        hand_back(child.owner, child.slot, running=running)


def _signal(child: _Child, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(child.process.pid or 0, signum)
