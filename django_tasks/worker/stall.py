"""Noticing a worker that is alive but no longer reaches its broker.

A process can sit for hours in a database call that never returns (a connection cut without a
reset, a lock that is never released), looking healthy to a process supervisor. A watchdog
thread, which itself never touches the database, compares the time of each consumer's last
completed poll (or finished task) and of the last successful heartbeat with
``TASKS_WORKER_STALL_TIMEOUT``. Past it, the worker logs why and exits with status 4, so that
systemd or Kubernetes starts a fresh one; its messages return when their leases lapse.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable

from .consumer import Running

logger = logging.getLogger("django_tasks.worker")

EXIT_STALLED = 4
#: (who, time.monotonic() of its last progress, what it is running or None)
Entry = tuple[str, float, Running | None]


def stalled(entries: Iterable[Entry], last_beat: float, timeout: float,
            now: float) -> str | None:
    """Why the worker is stalled, or None. A consumer running a task is not stalled: the
    task's time limits govern it."""
    if now - last_beat > timeout:
        return f"its heartbeat has not succeeded for {now - last_beat:.0f}s"
    for who, progress, running in entries:
        if running is None and now - progress > timeout:
            return f"{who} has not completed a poll of the broker for {now - progress:.0f}s"
    return None


class StallWatch:
    """The watchdog thread of one worker process."""

    def __init__(self, timeout: float | None, entries: Callable[[], Iterable[Entry]],
                 on_stall: Callable[[], None] = lambda: None) -> None:
        self.timeout = timeout
        self.entries = entries
        self.on_stall = on_stall  # e.g. kill the pool's processes, before the exit
        self.last_beat = time.monotonic()
        self._stop = threading.Event()

    def beat_ok(self) -> None:
        self.last_beat = time.monotonic()

    def start(self) -> StallWatch:
        if self.timeout:
            threading.Thread(target=self._loop, name="stall-watch", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        assert self.timeout
        period = min(1.0, self.timeout / 4)
        while not self._stop.wait(period):
            reason = stalled(self.entries(), self.last_beat, self.timeout, time.monotonic())
            if reason and not self._stop.is_set():
                self._exit(reason)

    def _exit(self, reason: str) -> None:
        logger.critical("Worker stalled: %s (TASKS_WORKER_STALL_TIMEOUT=%gs); exiting with "
                        "status %d so that it is restarted. Its messages return to the queue "
                        "when their leases lapse.", reason, self.timeout, EXIT_STALLED)
        for handler in logging.getLogger("django_tasks").handlers:
            handler.flush()
        sys.stderr.flush()
        self.on_stall()
        os._exit(EXIT_STALLED)
