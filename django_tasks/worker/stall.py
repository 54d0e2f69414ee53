"""Noticing a worker that is alive but no longer reaches its broker, and telling a probe.

A process can sit for hours in a database call that never returns (a connection cut without a
reset, a lock that is never released), looking healthy to a process supervisor. A watchdog
thread, which itself never touches the database, compares the time of each consumer's last
completed poll (or finished task) and of the last successful heartbeat with
``TASKS_WORKER_STALL_TIMEOUT``. Past it, the worker logs why and exits with status 4, so that
systemd or Kubernetes starts a fresh one; its messages return when their leases lapse.

With a health file (``--health-file``) the same thread rewrites, every second, a small JSON
file that ``python -m django_tasks.probe`` reads without importing Django: the file's age says
whether the worker lives, the ages inside it whether it reaches the broker.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

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

    def __init__(self, timeout: float | None, entries: Callable[[], Iterable[Entry]], *,
                 health_file: str | None = None, hostname: str = "") -> None:
        self.timeout = timeout
        self.entries = entries
        self.health_file = Path(health_file) if health_file else None
        self.hostname = hostname
        self.last_beat = time.monotonic()
        self._stop = threading.Event()

    def beat_ok(self) -> None:
        self.last_beat = time.monotonic()

    def start(self) -> StallWatch:
        if self.timeout or self.health_file:
            self._write_health()
            threading.Thread(target=self._loop, name="stall-watch", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self.health_file:
            self.health_file.unlink(missing_ok=True)

    def _loop(self) -> None:
        period = min(1.0, self.timeout / 4) if self.timeout else 1.0
        while not self._stop.wait(period):
            if self.timeout:
                reason = stalled(self.entries(), self.last_beat, self.timeout,
                                 time.monotonic())
                if reason and not self._stop.is_set():
                    self._exit(reason)
            self._write_health()

    def _write_health(self) -> None:
        if not self.health_file or self._stop.is_set():
            return
        now = time.monotonic()
        entries = list(self.entries())
        idle = [now - progress for _, progress, running in entries
                if running is None and progress != float("inf")]
        state = {"hostname": self.hostname, "pid": os.getpid(), "written": time.time(),
                 "heartbeat_age": round(now - self.last_beat, 3),
                 "poll_age": round(max(idle, default=0.0), 3),
                 "running": sum(1 for _, _, running in entries if running is not None),
                 "stall_timeout": self.timeout}
        try:  # written whole, then renamed: a probe never reads half a file
            partial = self.health_file.with_name(f".{self.health_file.name}.{os.getpid()}")
            partial.write_text(json.dumps(state))
            partial.replace(self.health_file)
        except OSError as exc:
            logger.warning("Cannot write the health file %s: %s", self.health_file, exc)

    def _exit(self, reason: str) -> None:
        logger.critical("Worker stalled: %s (TASKS_WORKER_STALL_TIMEOUT=%gs); exiting with "
                        "status %d so that it is restarted. Its messages return to the queue "
                        "when their leases lapse.", reason, self.timeout, EXIT_STALLED)
        for handler in logging.getLogger("django_tasks").handlers:
            handler.flush()
        sys.stderr.flush()
        os._exit(EXIT_STALLED)  # prefork children die with it (PR_SET_PDEATHSIG)
