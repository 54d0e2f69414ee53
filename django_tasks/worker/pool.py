"""The three pools: ``prefork`` (processes), ``threads`` and ``solo``.

Each runs :class:`Consumer` loops and supervises them: renews their leases on every
heartbeat, hands back at once what a dead one held, and shuts down in two steps. The first
SIGTERM/SIGINT is a warm shutdown (stop fetching, let running tasks finish within
``shutdown_timeout``); a second signal, or the end of that time, is a cold one (running
tasks are stopped and their messages go back to the queue at once).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from typing import TYPE_CHECKING, Any

from . import connections, heartbeat, limits
from .consumer import Consumer, Running, Slot
from .recycle import Recycler
from .stall import StallWatch

if TYPE_CHECKING:
    from .main import Worker

logger = logging.getLogger("django_tasks.worker")
TICK = 0.1
SLOT_BYTES = 1024  # a prefork child's Running record, shared with its supervisor
#: How long a thread may go on past its hard limit before the whole worker exits.
HARD_LIMIT_GRACE = 2.0
#: Exit status after a task that could not be stopped at its hard limit (threads, solo).
EXIT_STUCK = 3


class Signals:
    """Counts SIGTERM/SIGINT; the pools poll it."""

    def __init__(self) -> None:
        self.count = 0
        self.stop = threading.Event()

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        self.count += 1
        self.stop.set()
        kind = "warm" if self.count == 1 else "cold"
        logger.warning("%s received: %s shutdown", signal.Signals(signum).name, kind)


def run_pool(worker: Worker) -> int:
    runner = {"prefork": _run_prefork, "threads": _run_threads, "solo": _run_solo}[worker.pool]
    try:
        return runner(worker)
    finally:
        heartbeat.goodbye(worker)
        connections.close_all()


def _consumer(worker: Worker, owner: str, stop: Any, slot: Slot | None = None,
              recycler: Recycler | None = None) -> Consumer:
    return Consumer(queues=worker.queues, owner=owner, hostname=worker.hostname,
                    prefetch=worker.prefetch, lease=worker.lease, stop=stop, slot=slot,
                    hard_limit_in_thread=worker.pool != "prefork", recycler=recycler)


def _watch(worker: Worker, entries: Any) -> StallWatch:
    return StallWatch(worker.stall_timeout, entries, health_file=worker.health_file,
                      hostname=worker.hostname)


def _recycler(worker: Worker) -> Recycler:
    return Recycler(worker.max_tasks_per_child, worker.max_memory_per_child)


def _recycled(worker: Worker, recycler: Recycler) -> int:
    """After a threads or solo pool drained to be replaced: tell ``Worker.run`` to re-exec."""
    if recycler.triggered.is_set():
        logger.warning("Worker %s restarts itself: %s", worker.hostname, recycler.reason)
        worker.recycled = recycler.reason
    return 0


def _stuck(slots: list[Slot]) -> Running | None:
    """A task still running well past its hard limit, although it was raised in its thread."""
    now = time.monotonic()
    for slot in slots:
        running = slot.get()
        if running and running.deadline and now > running.deadline + HARD_LIMIT_GRACE:
            return running
    return None


def _exit_stuck(worker: Worker, running: Running, owner: str, owners: list[str]) -> None:
    """A thread cannot be killed: record the task as failed, hand back the rest, and exit
    so that the process supervisor (systemd, Kubernetes) starts a fresh worker."""
    limits.record_exceeded(running, worker.hostname, owner,
                           "it did not stop (blocked outside Python, or it caught "
                           f"TimeLimitExceeded), so worker {worker.hostname} exits with "
                           f"status {EXIT_STUCK} to be restarted")
    for each in owners:
        heartbeat.release(each)
    heartbeat.goodbye(worker)
    logger.critical("Exiting: task %s could not be stopped at its hard time limit",
                    running.label)
    logging.shutdown()
    os._exit(EXIT_STUCK)


# -- threads and solo -----------------------------------------------------------------------


def _run_threads(worker: Worker) -> int:
    sigs = Signals()
    sigs.install()
    owners = [f"{worker.hostname}/t{i}" for i in range(worker.concurrency)]
    slots = [Slot() for _ in owners]
    recycler = _recycler(worker)  # the process is the child: one count for all threads

    def serve(owner: str, slot: Slot) -> None:
        try:
            _consumer(worker, owner, sigs.stop, slot, recycler).run()
        finally:
            slot.finished()
            connections.close_all()

    threads = [threading.Thread(target=serve, args=(o, s), name=f"Thread-{i}", daemon=True)
               for i, (o, s) in enumerate(zip(owners, slots, strict=True))]
    for thread in threads:
        thread.start()
    watch = _watch(worker, lambda: [
        (f"thread {i}", s.progress, s.get()) for i, s in enumerate(slots)]).start()
    heartbeat.beat(worker, owners)
    next_beat = time.monotonic() + worker.heartbeat
    deadline: float | None = None
    while any(t.is_alive() for t in threads):
        time.sleep(TICK)
        if stuck := _stuck(slots):
            _exit_stuck(worker, stuck, owners[[s.get() for s in slots].index(stuck)], owners)
        if time.monotonic() >= next_beat:
            if heartbeat.beat(worker, owners):
                watch.beat_ok()
            next_beat = time.monotonic() + worker.heartbeat
        if sigs.count and deadline is None:
            deadline = time.monotonic() + worker.shutdown_timeout
        if sigs.count >= 2 or (deadline is not None and time.monotonic() > deadline):
            # Threads cannot be interrupted: hand their messages back and leave now.
            for owner in owners:
                heartbeat.release(owner)
            heartbeat.goodbye(worker)
            logger.warning("Cold shutdown: unfinished tasks returned to the queue")
            logging.shutdown()
            os._exit(0)
    watch.stop()
    return _recycled(worker, recycler)


class ColdShutdown(BaseException):
    """Raised in the solo pool's main thread to stop the running task."""


def _run_solo(worker: Worker) -> int:
    sigs = Signals()
    owner = f"{worker.hostname}/{os.getpid()}"
    beating = threading.Event()
    slot = Slot()
    recycler = _recycler(worker)

    def handle(signum: int, frame: Any) -> None:
        sigs._handle(signum, frame)
        if sigs.count >= 2:
            raise ColdShutdown()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)

    def keep_alive() -> None:
        deadline: float | None = None
        next_beat = time.monotonic() + worker.heartbeat
        while not beating.wait(TICK):
            if stuck := _stuck([slot]):
                _exit_stuck(worker, stuck, owner, [owner])
            if time.monotonic() >= next_beat:
                if heartbeat.beat(worker, [owner]):
                    watch.beat_ok()
                next_beat = time.monotonic() + worker.heartbeat
            if sigs.count and deadline is None:
                deadline = time.monotonic() + worker.shutdown_timeout
            if deadline is not None and time.monotonic() > deadline and sigs.count < 2:
                os.kill(os.getpid(), signal.SIGTERM)  # grace period over: go cold
                deadline = float("inf")
        connections.close_all()

    pulse = threading.Thread(target=keep_alive, name="heartbeat", daemon=True)
    # The heartbeat thread could hang in the database too: the watch is a thread of its own.
    watch = _watch(worker, lambda: [("the solo pool", slot.progress,
                                                       slot.get())]).start()
    heartbeat.beat(worker, [owner])
    pulse.start()
    try:
        _consumer(worker, owner, sigs.stop, slot, recycler).run()
    except ColdShutdown:
        heartbeat.release(owner)
        logger.warning("Cold shutdown: the unfinished task returned to the queue")
    finally:
        slot.finished()
        watch.stop()
        beating.set()
        pulse.join(timeout=5)
    return _recycled(worker, recycler)


# -- prefork --------------------------------------------------------------------------------


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies, so no orphan keeps a lease."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _child_main(worker: Worker, slot_array: Any, progress: Any) -> None:
    from ..conf import reset_cache
    from .logs import redirect_print

    _die_with_parent()
    parent = os.getppid()
    stop = threading.Event()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the terminal's ^C is for the parent
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    reset_cache()
    redirect_print()

    class SharedSlot(Slot):
        def set(self, running: Running) -> None:
            slot_array.value = running.encode().encode()[:SLOT_BYTES - 1]

        def clear(self) -> None:
            slot_array.value = b""
            self.mark()

        def mark(self) -> None:
            progress.value = time.monotonic()

        def finished(self) -> None:
            progress.value = float("inf")

    class Stop:
        def is_set(self) -> bool:
            return stop.is_set() or os.getppid() != parent

        def wait(self, timeout: float | None = None) -> bool:
            return stop.wait(timeout)

    owner = f"{worker.hostname}/{os.getpid()}"
    recycler = _recycler(worker)
    slot = SharedSlot()
    try:
        _consumer(worker, owner, Stop(), slot, recycler).run()
    finally:
        slot.finished()
        connections.close_all()
    if recycler.triggered.is_set():
        import multiprocessing

        logger.info("Replacing %s: %s", multiprocessing.current_process().name,
                    recycler.reason)


class _Child:
    def __init__(self, worker: Worker, index: int) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context("fork")
        self.slot = ctx.Array("c", SLOT_BYTES, lock=False)
        self.progress = ctx.Value("d", time.monotonic(), lock=False)  # see Slot.progress
        self.killed_for: Running | None = None  # killed at this task's hard limit
        connections.close_all()  # a forked child must not share the parent's sockets
        self.process = ctx.Process(target=_child_main, args=(worker, self.slot, self.progress),
                                   name=f"ForkPoolWorker-{index}", daemon=False)
        self.process.start()
        self.owner = f"{worker.hostname}/{self.process.pid}"
        self.index = index

    def running(self) -> Running | None:
        raw = bytes(self.slot.value).decode(errors="replace")
        return Running.decode(raw) if raw else None


def _run_prefork(worker: Worker) -> int:
    sigs = Signals()
    sigs.install()
    children = [_Child(worker, i + 1) for i in range(worker.concurrency)]
    watch = _watch(worker, lambda: [
        (c.process.name or "a pool process", c.progress.value, c.running())
        for c in list(children)]).start()
    heartbeat.beat(worker, [c.owner for c in children])
    next_beat = time.monotonic() + worker.heartbeat
    deadline: float | None = None
    while children:
        time.sleep(TICK)
        if sigs.count and deadline is None:
            deadline = time.monotonic() + worker.shutdown_timeout
            for child in children:
                _signal(child, signal.SIGTERM)
        if sigs.count >= 2 or (deadline is not None and time.monotonic() > deadline):
            _cold(children)
            break
        for child in list(children):
            if child.process.is_alive():
                _enforce_hard_limit(child)
                continue
            child.process.join()
            children.remove(child)
            _reap(child, worker, respawn=deadline is None, children=children)
        if time.monotonic() >= next_beat:
            if heartbeat.beat(worker, [c.owner for c in children]):
                watch.beat_ok()
            next_beat = time.monotonic() + worker.heartbeat
    watch.stop()
    return 0


def _signal(child: _Child, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(child.process.pid or 0, signum)


def _enforce_hard_limit(child: _Child) -> None:
    running = child.running()
    if (running and running.deadline and time.monotonic() > running.deadline
            and child.killed_for is None):
        child.killed_for = running
        _signal(child, signal.SIGKILL)


def _reap(child: _Child, worker: Worker, *, respawn: bool, children: list[_Child]) -> None:
    running = child.running()
    code = child.process.exitcode
    if running is not None and child.killed_for is not None \
            and running.tag == child.killed_for.tag:
        limits.record_exceeded(running, worker.hostname, child.owner,
                               f"its process {child.process.name} was killed")
        heartbeat.release(child.owner)
        code = 0  # replaced as planned, not a crash
    elif running is not None:
        how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        logger.error("Process %s died (%s) while running task %s; it goes back to the queue "
                     "and counts as one delivery", child.process.name, how, running.label)
        heartbeat.release(child.owner, keep_count=[running.delivery_tag])
    elif code != 0:
        heartbeat.release(child.owner)
    if respawn:
        if code != 0:
            logger.warning("Restarting %s (exit code %s)", child.process.name, code)
        children.append(_Child(worker, child.index))


def _cold(children: list[_Child]) -> None:
    for child in children:
        _signal(child, signal.SIGKILL)
    for child in children:
        child.process.join(timeout=5)
        heartbeat.release(child.owner)
    logger.warning("Cold shutdown: unfinished tasks returned to the queue")
