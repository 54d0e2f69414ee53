"""Time limits, raised inside the thread that runs a task.

The soft limit raises :class:`SoftTimeLimitExceeded` in the task, which may catch it to clean
up. The hard limit, where a pool cannot kill the task's process (``threads``, ``solo``), raises
:class:`TimeLimitExceeded` the same way; in ``prefork`` the supervisor kills the process
instead (see ``pool.py``), which also stops code that ignores exceptions or sits in C.

In a process's main thread (prefork children, solo) an interval timer's SIGALRM raises the
exception, which also interrupts ``time.sleep()`` and blocking I/O. In other threads a
watchdog thread raises it asynchronously (``PyThreadState_SetAsyncExc``); that takes effect at
the task's next Python instruction.
"""

from __future__ import annotations

import ctypes
import datetime as dt
import logging
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ..conf import task_settings
from ..exceptions import SoftTimeLimitExceeded, TimeLimitExceeded

if TYPE_CHECKING:
    from ..message import Message
    from ..result import TaskOutcome
    from ..task import Task
    from .slots import Running

logger = logging.getLogger("django_tasks.worker")


def defaults() -> tuple[float | None, float | None]:
    """``(hard, soft)`` from the settings, for tasks and calls that set none."""
    return task_settings.TIME_LIMIT, task_settings.SOFT_TIME_LIMIT


def resolve(task: Task[Any, Any], message: Message,
            fallback: tuple[float | None, float | None] | None = None,
            ) -> tuple[float | None, float | None]:
    """``(soft, hard)`` seconds for this run: the call's, else the task's, else ``fallback``
    (the settings', read once per batch by the consumer; here if not given)."""
    hard, soft = message.timelimit
    if hard is None:
        hard = task.time_limit
    if soft is None:
        soft = task.soft_time_limit
    if hard is None or soft is None:
        default_hard, default_soft = fallback or defaults()
        hard = default_hard if hard is None else hard
        soft = default_soft if soft is None else soft
    return (None if soft is None else float(soft)), (None if hard is None else float(hard))


@contextmanager
def enforced(label: str, soft: float | None, hard: float | None) -> Iterator[None]:
    """Raise the limits' exceptions in this thread while the block runs."""
    if soft is None and hard is None:
        yield
    elif threading.current_thread() is threading.main_thread():
        with _alarm(label, soft, hard):
            yield
    else:
        with _watchdog().watch(label, soft, hard):
            yield


# -- the main thread: SIGALRM ---------------------------------------------------------------


@contextmanager
def _alarm(label: str, soft: float | None, hard: float | None) -> Iterator[None]:
    started = time.monotonic()
    steps = sorted((limit, kind) for limit, kind in ((soft, "soft"), (hard, "hard"))
                   if limit is not None)
    pending = list(steps)
    armed = True

    def ring(signum: int, frame: Any) -> None:
        if not armed or not pending:
            return  # a late signal after the task ended: nothing to interrupt
        limit, kind = pending.pop(0)
        if pending:
            signal.setitimer(signal.ITIMER_REAL,
                             max(started + pending[0][0] - time.monotonic(), 0.001))
        raise (SoftTimeLimitExceeded.for_task(label, limit) if kind == "soft"
               else TimeLimitExceeded.for_task(label, limit))

    previous = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, steps[0][0])
    try:
        yield
    finally:
        armed = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# -- other threads: a watchdog raising asynchronous exceptions ------------------------------


def _raise_in(ident: int, exc_type: type[BaseException] | None) -> None:
    """Raise ``exc_type`` in thread ``ident`` at its next instruction; None clears it."""
    target = None if exc_type is None else ctypes.py_object(exc_type)  # None is NULL
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), target)


def _as_class(exc: BaseException) -> type[BaseException]:
    """A class whose instances are ``exc`` again: asynchronous exceptions are raised from a
    class, and this keeps the message (and the public name, for stored results)."""
    base, args = type(exc), exc.args

    def __init__(self: BaseException) -> None:
        base.__init__(self, *args)

    return type(base.__name__, (base,), {"__init__": __init__, "__module__": base.__module__,
                                         "__qualname__": base.__qualname__})


class _Watchdog:
    """One thread per process that raises limit exceptions in the threads running tasks."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        # thread id -> (when, exception class) still to come, soonest first; a thread runs
        # one task at a time, so this holds at most one entry per pool thread.
        self._due: dict[int, list[tuple[float, type[BaseException]]]] = {}
        threading.Thread(target=self._loop, name="time-limits", daemon=True).start()

    @contextmanager
    def watch(self, label: str, soft: float | None, hard: float | None) -> Iterator[None]:
        ident = threading.get_ident()
        now = time.monotonic()
        steps = []
        if soft is not None:
            steps.append((now + soft, _as_class(SoftTimeLimitExceeded.for_task(label, soft))))
        if hard is not None:
            steps.append((now + hard, _as_class(TimeLimitExceeded.for_task(label, hard))))
        with self._cond:
            self._due[ident] = sorted(steps, key=lambda step: step[0])
            self._cond.notify()
        try:
            yield
        finally:
            with self._cond:  # under the lock the watchdog raises with: no late raise
                self._due.pop(ident, None)
                _raise_in(ident, None)  # one raised but not yet delivered must not escape

    def _loop(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                for ident, steps in self._due.items():
                    while steps and steps[0][0] <= now:
                        _raise_in(ident, steps.pop(0)[1])
                upcoming = [steps[0][0] for steps in self._due.values() if steps]
                self._cond.wait(min(upcoming) - now if upcoming else None)


_lock = threading.Lock()
_instance: _Watchdog | None = None


def _watchdog() -> _Watchdog:
    global _instance
    with _lock:
        if _instance is None:
            _instance = _Watchdog()
        return _instance


# -- past the hard limit: the supervisor records it ------------------------------------------


def exceeded_outcome(running: Running, hostname: str,
                     what: str) -> tuple[TaskOutcome, TimeLimitExceeded]:
    """The FAILURE (``TimeLimitExceeded``) of a task stopped from outside; ``what`` says
    what was done to it (``its process was killed``)."""
    from .. import states
    from ..calling import utcnow
    from ..result import TaskOutcome, exception_to_result

    exc = TimeLimitExceeded.for_task(running.label, running.hard_limit, what)
    logger.error("Hard time limit (%gs) exceeded for %s: %s", running.hard_limit,
                 running.label, what)
    outcome = TaskOutcome(
        task_id=running.task_id, task_name=running.task_name, state=states.FAILURE,
        result=exception_to_result(exc), traceback=f"{type(exc).__name__}: {exc}",
        queue=running.queue, worker=hostname, attempts=running.deliveries,
        retries=running.retries, started_at=dt.datetime.fromtimestamp(running.started, dt.UTC),
        date_done=utcnow())
    return outcome, exc


def announce_exceeded(running: Running, exc: TimeLimitExceeded) -> None:
    from .. import signals
    from ..kernel import ExceptionInfo
    from ..registry import registry

    task = registry.get(running.task_name) if running.task_name in registry else None
    signals.send(signals.task_failure, task, task_id=running.task_id, exception=exc,
                 args=None, kwargs=None, traceback=None,
                 einfo=ExceptionInfo(exc, f"{type(exc).__name__}: {exc}"))
