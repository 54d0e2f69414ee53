"""The ``threads`` and ``solo`` pools: consumers in the worker's own process.

``threads`` runs one consumer per thread and supervises them from the main thread; a consumer
thread that dies (a bug of ours; a task's own errors never end it) has its messages handed
back, the one it ran counted, and is replaced; a message that comes back after its holder
died runs alone in the process (``alone.py``). ``solo`` runs its one consumer in the main
thread, so that time limits can interrupt a blocking call with SIGALRM, and supervises it
from a thread. Neither can kill a task: a task still running past its hard limit, although
the limit was raised in it, makes the worker exit with status 3.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..exceptions import ColdShutdown
from ..process import connections
from ..process.stall import Entry
from . import heartbeat
from .alone import Alone
from .consumer import Consumer
from .idle import LookTurns
from .recycle import Recycler
from .slots import Running, Slot
from .supervisor import (
    Pool,
    Signals,
    exit_stuck,
    give_back_waiting,
    hand_back,
    leave_now,
    owner_name,
    stuck,
    supervise,
)

if TYPE_CHECKING:
    from .main import Worker

logger = logging.getLogger("django_tasks.worker")


def _consumer(worker: Worker, owner: str, stop: Any, slot: Slot,
              recycler: Recycler, turns: LookTurns, alone: Alone | None = None) -> Consumer:
    return Consumer(queues=worker.queues, owner=owner, hostname=worker.hostname,
                    prefetch=worker.prefetch, lease=worker.lease, stop=stop, slot=slot,
                    hard_limit_in_thread=True, recycler=recycler, turns=turns, alone=alone)


class _Member:
    def __init__(self, owner: str, index: int) -> None:
        self.owner = owner
        self.index = index
        self.slot = Slot()
        self.thread: threading.Thread | None = None
        self.crashed = False
        self.consumer: Consumer | None = None
        self.retire = threading.Event()  # pool_shrink: stop after the running task


class _MemberStop:
    """A consumer thread's stop flag: the worker's, or its own retirement."""

    def __init__(self, worker_stop: threading.Event, retire: threading.Event) -> None:
        self.worker_stop, self.retire = worker_stop, retire

    def is_set(self) -> bool:
        return self.worker_stop.is_set() or self.retire.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.is_set():
            left = 0.25 if deadline is None else min(0.25, deadline - time.monotonic())
            if left <= 0:
                return False
            self.worker_stop.wait(left)
        return True


def _terminate_in(ident: int | None, running: Running) -> None:
    """Raise ``TaskTerminated`` in the thread running ``running``."""
    from ..exceptions import TaskTerminated
    from .limits import _as_class, _raise_in

    if ident is not None:
        _raise_in(ident, _as_class(TaskTerminated(
            f"Task {running.label} was revoked and terminated.")))


class _BeatThread:
    """``taskworker --beat`` in the threads and solo pools: the schedule loop in a thread
    (with its own database connection), restarted if it dies."""

    def __init__(self, worker: Worker, stop: threading.Event) -> None:
        self.worker, self.stop = worker, stop
        self.progress = time.monotonic()
        self.thread: threading.Thread | None = None

    def start(self) -> _BeatThread:
        self.thread = threading.Thread(target=self._run, name="beat", daemon=True)
        self.thread.start()
        return self

    def _run(self) -> None:
        from ..beat.main import embedded

        try:
            loop = embedded(self.worker.hostname, self.stop)
            loop.on_progress = self._mark
            loop.run()
        except Exception:
            logger.exception("The beat thread stopped on an unexpected error; restarting it")
        finally:
            connections.close_all()

    def _mark(self) -> None:
        self.progress = time.monotonic()

    def entry(self) -> Entry:
        return ("the beat thread", self.progress, None)

    def check(self) -> None:
        if self.thread is not None and not self.thread.is_alive() and not self.stop.is_set():
            self.start()


class ThreadPool(Pool):
    def __init__(self, worker: Worker, signals: Signals, recycler: Recycler) -> None:
        super().__init__(worker, signals)
        self.recycler = recycler  # the process is the child: one count for all threads
        self.members = [_Member(owner_name(worker.hostname, f"t{i}"), i)
                        for i in range(worker.concurrency)]
        self.beat = _BeatThread(worker, signals.stop) if worker.beat else None
        # A message that comes back after its holder died runs alone in the process.
        self.alone = Alone()

    def _serve(self, member: _Member) -> None:
        try:
            member.consumer = _consumer(self.worker, member.owner,
                                        _MemberStop(self.signals.stop, member.retire),
                                        member.slot, self.recycler, self.turns, self.alone)
            member.consumer.run()
        except BaseException:
            member.crashed = True
            logger.critical("Consumer thread %d stopped on an unexpected error; its messages "
                            "go back to the queue and the thread is replaced", member.index,
                            exc_info=True)
        finally:
            if not member.crashed:
                member.slot.finished()
            connections.close_all()

    def _launch(self, member: _Member) -> None:
        member.owner = owner_name(self.worker.hostname, f"t{member.index}")
        member.crashed = False
        member.slot.reset()
        member.thread = threading.Thread(target=self._serve, args=(member,),
                                         name=f"Thread-{member.index}", daemon=True)
        member.thread.start()

    def start(self) -> None:
        for member in self.members:
            self._launch(member)
        if self.beat is not None:
            self.beat.start()

    def owners(self) -> list[str]:
        return [m.owner for m in self.members if m.thread is not None and m.thread.is_alive()]

    def entries(self) -> Iterable[Entry]:
        entries: list[Entry] = [(f"thread {m.index}", m.slot.progress, m.slot.get())
                                for m in self.members]
        return [*entries, self.beat.entry()] if self.beat is not None else entries

    def alive(self) -> bool:
        return any(m.thread is not None and m.thread.is_alive() for m in self.members)

    def warm(self) -> None:
        pass  # the consumers watch the signals' stop event themselves

    def cold(self) -> None:
        leave_now(self.worker, [m.owner for m in self.members],
                  "Cold shutdown: unfinished tasks returned to the queue")

    # -- control ------------------------------------------------------------------------------

    def _serving(self) -> list[_Member]:
        return [m for m in self.members if not m.retire.is_set()]

    def consumer_slots(self) -> list[tuple[Slot, int]]:
        return [(m.slot, os.getpid()) for m in self._serving()]

    def terminate(self, task_id: str, signum: int) -> Running | None:
        for member in self._serving():
            running = member.slot.get()
            if running is not None and running.task_id == task_id and member.thread:
                logger.warning("Terminating task %s: an exception raised in thread %d "
                               "(a thread cannot be killed)", running.label, member.index)
                _terminate_in(member.thread.ident, running)
                return running
        return None

    def resize(self, delta: int) -> int:
        serving = self._serving()
        if delta > 0:
            for _ in range(delta):
                index = max([m.index for m in self.members] + [-1]) + 1
                member = _Member(owner_name(self.worker.hostname, f"t{index}"), index)
                self.members.append(member)
                self._launch(member)
        else:
            if len(serving) + delta < 1:
                raise ValueError(f"the pool has {len(serving)} thread(s); it cannot shrink "
                                 f"by {-delta} (one must stay)")
            for member in sorted(serving, key=lambda m: m.index)[delta:]:
                member.retire.set()  # finishes its batch, then its thread ends
        self.worker.concurrency = len(self._serving())
        return self.worker.concurrency

    def reconfigure(self) -> None:
        for member in self.members:
            if member.consumer is not None:
                member.consumer.queues = list(self.worker.queues)

    def check(self, *, respawn: bool) -> None:
        for member in [m for m in self.members if m.retire.is_set()]:
            if member.thread is None or not member.thread.is_alive():
                self.members.remove(member)
                logger.info("Thread %d retired (pool_shrink)", member.index)
        index = stuck([m.slot for m in self.members])
        if index is not None:
            member = self.members[index]
            exit_stuck(self.worker, member.slot, member.owner, [m.owner for m in self.members])
        if self.beat is not None and respawn:
            self.beat.check()
        for member in self.members:
            if member.thread is not None and member.thread.is_alive():
                give_back_waiting(member.owner, member.slot)
            if member.crashed and member.thread is not None and not member.thread.is_alive():
                hand_back(member.owner, member.slot, running=member.slot.get())
                member.slot.clear()
                if respawn:
                    self._launch(member)
                else:
                    member.crashed = False
                    member.slot.finished()


class SoloPool(Pool):
    """One consumer in the main thread; this pool's supervision runs in a thread."""

    def __init__(self, worker: Worker, signals: Signals, recycler: Recycler) -> None:
        super().__init__(worker, signals)
        self.recycler = recycler
        self.owner = owner_name(worker.hostname, "solo")
        self.slot = Slot()
        self.done = threading.Event()
        self._cold = False
        self.beat = _BeatThread(worker, signals.stop) if worker.beat else None
        self.consumer: Consumer | None = None
        self.ident = threading.get_ident()  # the main thread runs the consumer

    def consumer_slots(self) -> list[tuple[Slot, int]]:
        return [(self.slot, os.getpid())]

    def terminate(self, task_id: str, signum: int) -> Running | None:
        running = self.slot.get()
        if running is None or running.task_id != task_id:
            return None
        _terminate_in(self.ident, running)
        return running

    def reconfigure(self) -> None:
        if self.consumer is not None:
            self.consumer.queues = list(self.worker.queues)

    def start(self) -> None:
        # The main thread runs the consumer (see run_solo); only the beat needs starting.
        if self.beat is not None:
            self.beat.start()

    def owners(self) -> list[str]:
        return [self.owner]

    def entries(self) -> Iterable[Entry]:
        entry: Entry = ("the solo pool", self.slot.progress, self.slot.get())
        return [entry, self.beat.entry()] if self.beat is not None else [entry]

    def alive(self) -> bool:
        return not self.done.is_set()

    def warm(self) -> None:
        pass

    def cold(self) -> None:
        if self.signals.count < 2 and not self._cold:
            self._cold = True
            os.kill(os.getpid(), signal.SIGTERM)  # grace period over: go cold

    def check(self, *, respawn: bool) -> None:
        if stuck([self.slot]) is not None:
            exit_stuck(self.worker, self.slot, self.owner, [self.owner])
        if self.beat is not None and respawn:
            self.beat.check()


def run_threads(worker: Worker, recycler: Recycler) -> None:
    sigs = Signals()
    sigs.install()
    pool = ThreadPool(worker, sigs, recycler)
    watch = pool.watch().start()
    pool.start()
    try:
        supervise(pool, watch)
    finally:
        watch.stop()


def run_solo(worker: Worker, recycler: Recycler) -> None:
    sigs = Signals()
    pool = SoloPool(worker, sigs, recycler)

    def handle(signum: int, frame: Any) -> None:
        sigs.handle(signum, frame)
        if sigs.count >= 2:
            raise ColdShutdown()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    # The supervision thread could hang in the database: the watch is a thread of its own.
    watch = pool.watch().start()

    def supervision() -> None:
        try:
            supervise(pool, watch)
        finally:
            connections.close_all()

    thread = threading.Thread(target=supervision, name="heartbeat", daemon=True)
    thread.start()
    pool.start()
    try:
        pool.consumer = _consumer(worker, pool.owner, sigs.stop, pool.slot, recycler,
                                  pool.turns)
        pool.consumer.run()
    except ColdShutdown:
        heartbeat.release(pool.owner)
        logger.warning("Cold shutdown: the unfinished task returned to the queue")
    finally:
        pool.slot.finished()
        pool.done.set()
        thread.join(timeout=5)
        watch.stop()
