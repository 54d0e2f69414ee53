"""``Worker``: settings and options in, one pool run out."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TextIO

from ..conf import task_settings
from ..message import name_error
from ..process import logs
from . import banner

POOLS = ("prefork", "threads", "solo")


def expand_hostname(name: str) -> str:
    """Celery's name variables: ``%h`` host name, ``%n`` its first label, ``%d`` the rest."""
    host = socket.gethostname()
    short, _, domain = host.partition(".")
    out, chars = [], iter(name)
    for char in chars:
        if char != "%":
            out.append(char)
            continue
        code = next(chars, "")
        values = {"h": host, "n": short, "d": domain, "%": "%"}
        if code not in values:
            raise ValueError(f"--hostname {name!r}: unknown variable %{code}; use %h (host "
                             "name), %n (its first label), %d (domain) or %% (a percent sign)")
        out.append(values[code])
    return "".join(out)


@dataclass(eq=False)  # hashable, as a signal's sender must be
class Worker:
    """A worker with its options; ``run()`` blocks until shutdown and returns the exit code."""

    queues: Sequence[str] = field(default_factory=lambda: [str(task_settings.DEFAULT_QUEUE)])
    concurrency: int = field(default_factory=lambda: task_settings.concurrency)
    pool: str = "prefork"
    hostname: str = ""
    prefetch: int = field(default_factory=lambda: int(task_settings.WORKER_PREFETCH))
    lease: float = field(default_factory=lambda: float(task_settings.LEASE_SECONDS))
    heartbeat: float = field(default_factory=lambda: float(task_settings.HEARTBEAT_SECONDS))
    shutdown_timeout: float = field(
        default_factory=lambda: float(task_settings.WORKER_SHUTDOWN_TIMEOUT))
    loglevel: str = "INFO"
    out: TextIO = field(default_factory=lambda: sys.stdout)
    max_tasks_per_child: int | None = field(
        default_factory=lambda: task_settings.WORKER_MAX_TASKS_PER_CHILD)
    max_memory_per_child: int | None = field(  # KiB, as in Celery
        default_factory=lambda: task_settings.WORKER_MAX_MEMORY_PER_CHILD)
    stall_timeout: float | None = field(
        default_factory=lambda: task_settings.WORKER_STALL_TIMEOUT)
    health_file: str | None = field(default_factory=lambda: task_settings.WORKER_HEALTH_FILE)
    #: Run the scheduler too (``taskworker --beat``): a process of its own in prefork, a
    #: thread in the other pools.
    beat: bool = False
    #: Set when a threads or solo pool stopped to be replaced: the reason.
    recycled: str = field(default="", init=False)

    def __post_init__(self) -> None:
        if self.pool not in POOLS:
            raise ValueError(f"--pool {self.pool!r} is not one of {', '.join(POOLS)}")
        if self.concurrency < 1:
            raise ValueError("--concurrency must be at least 1")
        if isinstance(self.prefetch, bool) or not isinstance(self.prefetch, int) \
                or self.prefetch < 1:
            raise ValueError(f"--prefetch must be a whole number of at least 1, not "
                             f"{self.prefetch!r}")
        if not (isinstance(self.shutdown_timeout, int | float) and self.shutdown_timeout >= 0):
            raise ValueError(f"--shutdown-timeout must be a number of seconds, 0 or more, "
                             f"not {self.shutdown_timeout!r}")
        self.queues = [q.strip() for q in self.queues if q.strip()]
        if not self.queues:
            raise ValueError("--queues names no queue")
        for option in ("max_tasks_per_child", "max_memory_per_child"):
            value = getattr(self, option)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 1):
                raise ValueError(f"--{option.replace('_', '-')} must be a whole number of at "
                                 f"least 1, not {value!r}")
        if self.stall_timeout is not None and not (
                isinstance(self.stall_timeout, int | float) and self.stall_timeout > 0):
            raise ValueError(f"--stall-timeout must be a positive number of seconds, not "
                             f"{self.stall_timeout!r}")
        if self.pool == "solo":
            self.concurrency = 1
        self.hostname = expand_hostname(self.hostname or f"worker{os.getpid()}@%h")
        if problem := name_error(self.hostname, "--hostname"):
            raise ValueError(problem)

    def run(self) -> int:
        """Consume until shutdown and return the exit code. Raises ``WorkerNameInUse`` if
        the name is taken, ``BrokerUnreachable`` if the database never answered.

        A threads or solo worker replaced after ``--max-*-per-child`` does not return: it
        executes itself again, same pid, same arguments."""
        from .. import signals
        from . import heartbeat
        from .pool import run_pool

        logs.configure(self.loglevel)
        heartbeat.register(self)
        banner.banner(self, self.out)
        signals.send(signals.worker_ready, self)
        try:
            code = run_pool(self)
        finally:
            signals.send(signals.worker_shutdown, self)
        if self.recycled:
            from ..process.restart import restart_in_place

            restart_in_place()
        return code
