"""The worker's start-up banner."""

from __future__ import annotations

from typing import TYPE_CHECKING, TextIO

from django.db import connections

from ..registry import registry

if TYPE_CHECKING:
    from .main import Worker

def banner(worker: Worker, out: TextIO) -> None:
    from .. import conf

    broker = conf.get_broker()
    store = conf.get_result_store()
    vendor = ""
    alias = broker.database_alias
    if broker.capabilities.transactional and alias:
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
        *([" .> beat:        yes (periodic tasks are queued by this worker too)"]
          if worker.beat else []),
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
