"""Deleting expired results in bounded batches: what ``manage.py taskprune`` runs.

Each batch is one short statement (the store's ``prune(before, batch_size)``), so pruning
millions of rows never holds a long lock or a long transaction next to running workers.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import clock
from ..conf import get_result_store, task_settings
from ..exceptions import ConfigurationError, ResultBackendDisabled, TaskError
from .counters import MIN_KEEP


@dataclass(frozen=True, slots=True)
class PruneReport:
    """What a prune did, or with ``dry_run`` would do."""

    before: dt.datetime | None  # results finished before this went; None: they never expire
    count: int
    batches: int = 0
    batch_size: int = 0
    dry_run: bool = False
    #: Per-minute counter rows folded into their totals (``results/counters.py``).
    counters: int = 0


def prune_expired(*, older_than: dt.timedelta | None = None, batch_size: int | None = None,
                  dry_run: bool = False, store: Any = None, now: dt.datetime | None = None,
                  on_batch: Callable[[int], None] | None = None) -> PruneReport:
    """Delete finished results older than ``older_than`` (default ``TASKS_RESULT_EXPIRES``).

    Deletes batches of ``batch_size`` (default ``TASKS_PRUNE_BATCH_SIZE``) until one comes
    back short. Only SUCCESS, FAILURE and REVOKED results go: queued and running tasks stay,
    however old. ``on_batch`` is called with each batch's count.

    The dashboard's per-minute counters are kept as long as results, and a day at least;
    older minutes are folded into one totals row per task name and state.
    """
    store = store if store is not None else get_result_store()
    if store is None:
        raise ResultBackendDisabled("TASKS_RESULT_BACKEND is None: no results are stored.")
    expires = older_than if older_than is not None else task_settings.result_expires
    if expires is None:
        return PruneReport(before=None, count=0, dry_run=dry_run)
    if expires < dt.timedelta(0):
        raise ValueError(f"The age of results to prune cannot be negative ({expires}).")
    size = _batch_size(batch_size)
    before = (now or clock.now()) - expires
    if dry_run:
        return PruneReport(before, count_expired(store, before), 0, size, dry_run=True)
    total = batches = 0
    while True:
        deleted = int(store.prune(before, size))
        total, batches = total + deleted, batches + 1
        if on_batch is not None:
            on_batch(deleted)
        if deleted < size:
            folded = _fold_counters(store, (now or clock.now()) - max(expires, MIN_KEEP), size)
            return PruneReport(before, total, batches, size, counters=folded)


def _fold_counters(store: Any, before: dt.datetime, size: int) -> int:
    folded = 0
    while True:
        rows = int(store.prune_counters(before, size))
        folded += rows
        if rows < size:
            return folded


def count_expired(store: Any, before: dt.datetime) -> int:
    """How many results ``prune_expired`` would delete (``--dry-run``)."""
    from .database import DatabaseResultStore

    if isinstance(store, DatabaseResultStore):
        from ..models import TaskResult

        return TaskResult.objects.using(store.database_alias).done_before(before).count()
    raise TaskError(f"{type(store).__name__} cannot count expired results; a dry run needs "
                    "the database result store (TASKS_RESULT_BACKEND = 'django://').")


def _batch_size(given: int | None) -> int:
    if given is not None:
        if isinstance(given, bool) or not isinstance(given, int) or given < 1:
            raise ValueError(f"The batch size must be a positive int, not {given!r}.")
        return given
    size = task_settings.PRUNE_BATCH_SIZE
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ConfigurationError(
            f"TASKS_PRUNE_BATCH_SIZE={size!r}: it must be a positive int (default 1000).")
    return size
