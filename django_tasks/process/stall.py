"""Noticing a process that is alive but no longer reaches its database, and telling a probe.

A process can sit for hours in a database call that never returns (a connection cut without a
reset, a lock that is never released), looking healthy to a process supervisor. A watchdog
thread, which itself never touches the database, compares the time of each consumer's last
completed poll (or finished task) and of the last successful heartbeat with
``TASKS_WORKER_STALL_TIMEOUT``. Past it, the worker logs why and exits with status 4, so that
systemd or Kubernetes starts a fresh one; its messages return when their leases lapse.

With a health file (``--health-file``) the same watchdog rewrites, every second, a small JSON
file that ``python -m django_tasks.probe`` reads without importing Django: the file's age says
whether the worker lives, the ages inside it whether it reaches the broker.

In the ``threads`` and ``solo`` pools the watchdog is a thread. A ``prefork`` worker forks pool
processes all its life, and forking a process that runs threads can leave the child holding a
lock no thread will ever release; so there the watchdog is a small process of its own, forked
first, that reads the pool's shared slots and asks the main process to exit (SIGUSR2, then
SIGKILL if it does not) when it stalls.
"""

from __future__ import annotations

import ctypes
import json
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from . import logs
from .children import die_with_parent

logger = logging.getLogger("django_tasks.process")

EXIT_STALLED = 4
#: (who, time.monotonic() of its last progress, what it is running or None: a task, say)
Entry = tuple[str, float, object | None]


def stalled(entries: Iterable[Entry], last_beat: float, timeout: float, now: float,
            progress_is: str = "completed a poll of the broker") -> str | None:
    """Why the process is stalled, or None. An entry running something (a task) is not
    stalled: the task's time limits govern it."""
    if now - last_beat > timeout:
        return f"its heartbeat has not succeeded for {now - last_beat:.0f}s"
    for who, progress, running in entries:
        if running is None and now - progress > timeout:
            return f"{who} has not {progress_is} for {now - progress:.0f}s"
    return None


class StallWatch:
    """The watchdog of one worker: a thread (``start``) or a process (``start_process``)."""

    def __init__(self, timeout: float | None, entries: Callable[[], Iterable[Entry]], *,
                 health_file: str | None = None, hostname: str = "",
                 what: str = "Worker", progress_is: str = "completed a poll of the broker",
                 ) -> None:
        self.what = what
        self.progress_is = progress_is
        self.timeout = timeout
        self.entries = entries
        self.health_file = Path(health_file) if health_file else None
        self.hostname = hostname
        # Shared memory, so that a watchdog process sees the main process's heartbeats.
        context = multiprocessing.get_context("fork")
        self._last_beat: Any = context.RawValue(ctypes.c_double, time.monotonic())
        self._stopped: Any = context.RawValue(ctypes.c_bool, False)
        self._main_pid = os.getpid()
        self._process: multiprocessing.process.BaseProcess | None = None

    @property
    def active(self) -> bool:
        return bool(self.timeout or self.health_file)

    @property
    def last_beat(self) -> float:
        return float(self._last_beat.value)

    def beat_ok(self) -> None:
        self._last_beat.value = time.monotonic()

    def start(self) -> StallWatch:
        """Watch from a thread of this process."""
        if self.active:
            self._write_health()
            threading.Thread(target=self._loop, name="stall-watch", daemon=True).start()
        return self

    def start_process(self) -> StallWatch:
        """Watch from a process of its own: call before this process starts any thread."""
        if self.active:
            self._write_health()
            signal.signal(signal.SIGUSR2, _exit_stalled)
            context = multiprocessing.get_context("fork")
            self._process = context.Process(target=self._watchdog_main, name="StallWatch",
                                            daemon=True)
            self._process.start()
        return self

    def stop(self) -> None:
        self._stopped.value = True
        if self._process is not None:
            self._process.join(timeout=5)
            if self._process.is_alive():
                self._process.kill()
        if self.health_file:
            self.health_file.unlink(missing_ok=True)

    def _watchdog_main(self) -> None:
        die_with_parent()
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the terminal's ^C is for the parent
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        self._loop()

    def _loop(self) -> None:
        period = min(1.0, self.timeout / 4) if self.timeout else 1.0
        while not self._stopped.value:
            time.sleep(period)
            if self._stopped.value:
                break
            if self.timeout:
                reason = stalled(self.entries(), self.last_beat, self.timeout,
                                 time.monotonic(), self.progress_is)
                if reason and not self._stopped.value:
                    self._exit(reason)
            self._write_health()

    def _write_health(self) -> None:
        if not self.health_file or self._stopped.value:
            return
        now = time.monotonic()
        entries = list(self.entries())
        idle = [now - progress for _, progress, running in entries
                if running is None and progress != float("inf")]
        state = {"hostname": self.hostname, "pid": self._main_pid, "written": time.time(),
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
        logger.critical("%s stalled: %s (TASKS_WORKER_STALL_TIMEOUT=%gs); exiting with "
                        "status %d so that it is restarted.", self.what, reason, self.timeout,
                        EXIT_STALLED)
        logs.flush()
        if os.getpid() == self._main_pid:
            os._exit(EXIT_STALLED)  # prefork children die with it (PR_SET_PDEATHSIG)
        # A watchdog process: the main process exits at once on SIGUSR2 unless it is stuck
        # in C (a database driver waiting on a socket); then it is killed.
        os.kill(self._main_pid, signal.SIGUSR2)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and os.getppid() == self._main_pid:
            time.sleep(0.05)
        if os.getppid() == self._main_pid:
            logger.critical("The main process did not exit; killing it")
            logs.flush()
            os.kill(self._main_pid, signal.SIGKILL)
        os._exit(0)


def _exit_stalled(signum: int, frame: Any) -> None:
    """SIGUSR2 from the watchdog process: the main process stalled; leave now."""
    logs.flush()
    os._exit(EXIT_STALLED)
