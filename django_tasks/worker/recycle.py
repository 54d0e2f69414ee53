"""Replacing a process that has run enough tasks or grown too big (``--max-tasks-per-child``,
``--max-memory-per-child``).

Checked after each task. A prefork child that reaches a limit finishes its task, hands back the
messages it holds but has not started (uncounted) and exits; its supervisor starts a new one.
In the ``threads`` and ``solo`` pools the process is the worker: it drains like a warm
shutdown and then executes itself again, keeping its pid.
"""

from __future__ import annotations

import os
import resource
import threading


def rss_kib() -> int:
    """This process's resident memory in KiB (Linux: now; elsewhere: its peak)."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            resident_pages = int(fh.read().split()[1])
        return resident_pages * os.sysconf("SC_PAGE_SIZE") // 1024
    except (OSError, ValueError, IndexError):
        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


class Recycler:
    """Counts the tasks of one process and says when it should be replaced."""

    def __init__(self, max_tasks: int | None = None, max_memory_kib: int | None = None) -> None:
        self.max_tasks = max_tasks
        self.max_memory_kib = max_memory_kib
        self.tasks = 0
        self.reason = ""
        self.triggered = threading.Event()
        self._lock = threading.Lock()

    @property
    def active(self) -> bool:
        return bool(self.max_tasks or self.max_memory_kib)

    def after_task(self) -> bool:
        """Count one finished task; True once the process should be replaced."""
        if not self.active:
            return False
        with self._lock:
            self.tasks += 1
            if self.triggered.is_set():
                return True
            if self.max_tasks and self.tasks >= self.max_tasks:
                self.reason = f"it ran {self.tasks} tasks (--max-tasks-per-child {self.max_tasks})"
            elif self.max_memory_kib and (rss := rss_kib()) > self.max_memory_kib:
                self.reason = (f"it uses {rss:,} KiB of memory (--max-memory-per-child "
                               f"{self.max_memory_kib:,})")
            else:
                return False
            self.triggered.set()
            return True
