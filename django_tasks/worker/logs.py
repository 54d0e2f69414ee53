"""Worker logging: the level, the start-up banner, and ``print`` routed to the log."""

from __future__ import annotations

import io
import logging
import sys
from typing import TYPE_CHECKING, TextIO

from django.db import connections

from ..registry import registry

if TYPE_CHECKING:
    from .main import Worker

FORMAT = "[%(asctime)s: %(levelname)s/%(processName)s] %(message)s"


def configure(loglevel: str) -> None:
    """Set the level of django_tasks' loggers, adding a handler if the project has none."""
    level = logging.getLevelName(loglevel.upper())
    if not isinstance(level, int):
        raise ValueError(f"--loglevel {loglevel!r} is not one of DEBUG, INFO, WARNING, ERROR")
    root = logging.getLogger("django_tasks")
    root.setLevel(level)
    if not root.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(handler)


class PrintToLog(io.TextIOBase):
    """Stands in for ``sys.stdout`` in pool processes: each printed line is a WARNING."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self._buffer = ""

    def write(self, text: str) -> int:
        self._buffer += text
        while "\n" in self._buffer:
            line, self._buffer = self._buffer.split("\n", 1)
            if line:
                self.logger.warning("%s", line)
        return len(text)

    def flush(self) -> None:
        if self._buffer:
            self.logger.warning("%s", self._buffer)
            self._buffer = ""


def redirect_print() -> None:
    sys.stdout = PrintToLog(logging.getLogger("django_tasks.task.stdout"))


def banner(worker: Worker, out: TextIO) -> None:
    from .. import conf

    broker = conf.get_broker()
    store = conf.get_result_store()
    vendor = ""
    alias = getattr(broker, "database_alias", None)
    if broker.transactional and alias:
        vendor = f" ({connections[alias].vendor})"
    lines = [
        f" -------------- {worker.hostname} v{_version()}",
        f" .> transport:   {broker.describe()}{vendor}",
        f" .> results:     {store.describe() if store else 'disabled'}",
        f" .> concurrency: {worker.concurrency} ({worker.pool})",
        f" .> prefetch:    up to {worker.prefetch} per process",
        f" .> leases:      {worker.lease:g}s, renewed every {worker.heartbeat:g}s",
        *([f" .> recycle:     {_recycling(worker)}"]
          if worker.max_tasks_per_child or worker.max_memory_per_child else []),
        f" .> queues:      {', '.join(worker.queues)}",
        "",
        "[tasks]",
        *(f"  . {name}" for name in registry),
        "",
    ]
    out.write("\n".join(lines) + "\n")
    out.flush()


def _recycling(worker: Worker) -> str:
    what = "each pool process" if worker.pool == "prefork" else "the worker process"
    limits = []
    if worker.max_tasks_per_child:
        limits.append(f"{worker.max_tasks_per_child} tasks")
    if worker.max_memory_per_child:
        limits.append(f"{worker.max_memory_per_child:,} KiB resident")
    return f"{what} after {' or '.join(limits)}"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("django-taskworker")
    except PackageNotFoundError:
        return "dev"
