"""One tick of the beat: compute the next runs nobody computed, then queue what is due.

Every tick reads only rows it must act on, with indexed queries whose number does not grow
with the number of schedules:

1. periodic tasks whose ``next_run_at`` is empty (new through ``update()``, or a schedule
   edited in bulk) get it computed, never in the past, so an edit fires nothing at once;
2. due periodic tasks are locked (``SKIP LOCKED`` where the database has it, so that
   several beats share the work instead of waiting), and in the same transaction each
   due run claims its ``BeatSlot`` (unique per task and due time), its message and
   PENDING row are written through the publishing path, and the row moves on to its next
   run. A run another beat claimed first fails its unique row and is not queued again.

A missed stretch (the beat was down or late, the clock jumped) queues the one slot that is
due, once, and moves on to the first slot after now: no burst of catch-up runs. The runs it
skips are logged (a WARNING per periodic task) and counted in the tick's report.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from django.db import connections, transaction

from .. import clock
from ..message import Message, printable
from ..models import BeatSlot, PeriodicTask
from ..models.schedules import PeriodicTaskQuerySet
from ..publishing import publish_many
from ..schedules import ScheduleError
from .entries import EntryError, message_for

logger = logging.getLogger("django_tasks.beat")
#: Due periodic tasks claimed in one transaction.
BATCH = 500
#: Queued slots are kept this long (the unique row guards against a beat that acts on an
#: old view; past this, the row's own next run does).
SLOT_HISTORY = dt.timedelta(hours=1)
PRUNE_EVERY = 60.0
PRUNE_BATCH = 5000
#: A tick that queues more runs than this logs one line for all of them (each at DEBUG).
LOG_EACH = 10


@dataclass
class TickReport:
    """What one tick did."""

    queued: int = 0
    computed: int = 0
    skipped: int = 0
    #: Queued runs whose next due time(s) had passed too: those were not queued.
    missed: int = 0
    #: Seconds between each queued run's due time and its queueing.
    lateness: list[float] = field(default_factory=list)


@dataclass
class _Due:
    row: PeriodicTask
    due: dt.datetime
    message: Message | None
    next_run: dt.datetime | None
    #: The first slot after ``due`` when it had passed too (it and those up to ``next_run``
    #: are skipped), else None.
    missed_from: dt.datetime | None = None


_ADVANCED = ("next_run_at", "last_run_at", "total_run_count", "last_task_id", "enabled")


def advance_rows(alias: str, rows: list[PeriodicTask]) -> None:
    """Write the beat's columns of ``rows`` in one UPDATE joined to the new values (Django's
    ``bulk_update`` builds a CASE per row and column: most of a tick's time at 100 rows)."""
    connection = connections[alias]
    quote = connection.ops.quote_name
    adapt = connection.ops.adapt_datetimefield_value
    table = quote(PeriodicTask._meta.db_table)
    params: list[Any] = []
    for row in rows:
        params += [row.id, adapt(row.next_run_at), adapt(row.last_run_at),
                   row.total_run_count, row.last_task_id, row.enabled]
    sets = ", ".join(f"{quote(name)} = v.{quote(name)}" for name in _ADVANCED)
    names = ", ".join(quote(name) for name in ("id", *_ADVANCED))
    vendor = connection.vendor
    if vendor == "postgresql":
        values = ", ".join(["(%s::bigint, %s::timestamptz, %s::timestamptz, %s::integer, %s, "
                            "%s::boolean)"] * len(rows))
        sql = (f"UPDATE {table} SET {sets} FROM (VALUES {values}) AS v({names}) "
               f"WHERE {table}.{quote('id')} = v.{quote('id')}")
    elif vendor == "sqlite":
        values = ", ".join(["(%s, %s, %s, %s, %s, %s)"] * len(rows))
        sql = (f"WITH v({names}) AS (VALUES {values}) UPDATE {table} SET {sets} FROM v "
               f"WHERE {table}.{quote('id')} = v.{quote('id')}")
    else:  # MySQL, MariaDB: a derived table joined in a multi-table UPDATE
        first = "SELECT " + ", ".join(f"%s AS {quote(n)}" for n in ("id", *_ADVANCED))
        rest = " UNION ALL SELECT %s, %s, %s, %s, %s, %s" * (len(rows) - 1)
        sets = ", ".join(f"t.{quote(name)} = v.{quote(name)}" for name in _ADVANCED)
        sql = (f"UPDATE {table} AS t JOIN ({first}{rest}) AS v ON t.{quote('id')} = "
               f"v.{quote('id')} SET {sets}")
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


class Scheduler:
    """The periodic tasks of one database alias, ticked by one beat named ``name``."""

    def __init__(self, name: str, alias: str = "default", batch: int = BATCH) -> None:
        self.name = name
        self.alias = alias
        self.batch = batch
        # Rows that cannot be computed or queued, by id, with the version (date_changed)
        # seen: reported once, and left alone until someone changes them.
        self._broken: dict[int, dt.datetime] = {}
        # Rows whose runs cannot be queued (an unregistered task, bad arguments): reported
        # once per version; their schedule goes on.
        self._skipped: dict[int, dt.datetime] = {}
        self._pruned = 0.0

    @property
    def _rows(self) -> PeriodicTaskQuerySet:
        return PeriodicTask.objects.using(self.alias)

    def tick(self, now: dt.datetime | None = None) -> TickReport:
        now = now or clock.now()
        report = TickReport()
        self.forget_fixed()
        self._compute(now, report)
        while self._claim(now, report) >= self.batch:
            pass
        if time.monotonic() - self._pruned > PRUNE_EVERY:
            self._prune(now)
        return report

    def next_due(self) -> dt.datetime | None:
        """The earliest next run of an enabled periodic task (one indexed lookup), so that
        the beat can wake for it instead of at its next tick."""
        return (self._rows.filter(enabled=True, next_run_at__isnull=False)
                .order_by("next_run_at").values_list("next_run_at", flat=True).first())

    # -- 1. next runs nobody computed ---------------------------------------------------

    def _compute(self, now: dt.datetime, report: TickReport) -> None:
        rows = list(self._rows.to_compute().exclude(id__in=list(self._broken))
                    .select_related("interval", "crontab", "clocked")[:self.batch])
        for row in rows:
            try:
                next_run = row.first_run_after(now)
            except (ScheduleError, ValueError) as exc:
                self._report(row, exc)
                continue
            changes: dict[str, object] = {"next_run_at": next_run,
                                          "date_changed": row.date_changed}
            if next_run is None:
                changes["enabled"] = False  # a clocked task that ran: nothing is left
                logger.info("Periodic task %s has nothing left to run: disabled",
                            printable(row.name))
            # Only if nobody changed it meanwhile; then the next tick computes it again.
            report.computed += self._rows.filter(
                id=row.id, next_run_at__isnull=True,
                date_changed=row.date_changed).update(**changes)

    # -- 2. due runs, claimed and queued ------------------------------------------------

    def _claim(self, now: dt.datetime, report: TickReport) -> int:
        features = connections[self.alias].features
        with transaction.atomic(using=self.alias):
            rows = self._rows.due(now).exclude(id__in=list(self._broken)).select_related(
                "interval", "crontab", "clocked").order_by("next_run_at")
            if features.has_select_for_update_skip_locked:
                # Only the task rows where the database can say so (not the schedules,
                # which tasks share); elsewhere the joined rows are locked too.
                of = ("self",) if features.has_select_for_update_of else ()
                rows = rows.select_for_update(skip_locked=True, of=of)
            claimed = [self._plan(row, now) for row in rows[:self.batch]]
            runs = [d for d in claimed if d is not None]
            queued = self._queue(runs, now)
            self._advance(runs, queued, now)
            done = [d for d in runs if d.message is not None and d.message.id in queued]
            missed = [d for d in done if d.missed_from is not None]
            self._log_missed(missed, now)
        report.queued += len(queued)
        report.skipped += len(claimed) - len(queued)
        report.missed += len(missed)
        report.lateness += [(now - d.due).total_seconds() for d in done]
        return len(claimed)

    def _plan(self, row: PeriodicTask, now: dt.datetime) -> _Due | None:
        due = row.next_run_at
        assert due is not None
        try:
            next_run = row.run_after(due, now)
        except (ScheduleError, ValueError) as exc:
            self._report(row, exc)
            return None
        missed_from = None
        if next_run is not None:
            following = row.run_after(due, due)  # the next slot, had the beat been on time
            if following is not None and following < next_run:
                missed_from = following
        message = None
        if row.expires is not None and row.expires <= now:
            logger.info("Periodic task %s expired at %s: disabled", printable(row.name),
                        row.expires.isoformat())
            next_run, row.enabled = None, False
        else:
            try:
                message = message_for(row, due, now)
            except EntryError as exc:  # the schedule goes on; this run is not queued
                self._report(row, exc, forget=False)
        return _Due(row, due, message, next_run, missed_from)

    def _queue(self, runs: list[_Due], now: dt.datetime) -> set[str]:
        """Claim a slot for each run and publish the messages of those claimed here; return
        their task ids."""
        slots = [BeatSlot(periodic_task_id=d.row.id, due_at=d.due, task_id=d.message.id,
                          queued_at=now, beat=self.name)
                 for d in runs if d.message is not None]
        if not slots:
            return set()
        BeatSlot.objects.using(self.alias).bulk_create(slots, ignore_conflicts=True)
        ids = [s.task_id for s in slots]  # fresh ids: a slot with one of them is ours
        mine = set(BeatSlot.objects.using(self.alias).filter(task_id__in=ids)
                   .values_list("task_id", flat=True))
        messages = [d.message for d in runs if d.message is not None and d.message.id in mine]
        publish_many(messages)
        level = logging.INFO if len(mine) <= LOG_EACH else logging.DEBUG
        for d in runs:
            if d.message is not None and d.message.id in mine:
                logger.log(level, "Queued %s for periodic task %s (due %s)",
                           printable(f"{d.message.task}[{d.message.id}]"),
                           printable(d.row.name), d.due.isoformat())
        if level == logging.DEBUG:
            logger.info("Queued %d periodic runs (each is logged at DEBUG)", len(mine))
        return mine

    @staticmethod
    def _log_missed(runs: list[_Due], now: dt.datetime) -> None:
        """Say which runs a late tick skipped: a WARNING each, or one for many."""
        level = logging.WARNING if len(runs) <= LOG_EACH else logging.DEBUG
        for d in runs:
            assert d.missed_from is not None and d.next_run is not None
            logger.log(level, "Periodic task %s missed its runs due from %s to before %s "
                       "(the beat was down or late, or the clock jumped: its run due at %s "
                       "was queued %.1fs late, once, and the cadence goes on)",
                       printable(d.row.name), d.missed_from.isoformat(),
                       d.next_run.isoformat(), d.due.isoformat(),
                       (now - d.due).total_seconds())
        if level == logging.DEBUG:
            logger.warning("%d periodic tasks missed runs (the beat was down or late, or the "
                           "clock jumped): each queued one run, late, and goes on with its "
                           "cadence (each is logged at DEBUG)", len(runs))

    def _advance(self, runs: list[_Due], queued: set[str], now: dt.datetime) -> None:
        """Move each claimed row on to its next run, in one statement (queueing is not an
        edit: ``date_changed`` stays)."""
        for d in runs:
            row = d.row
            row.next_run_at = d.next_run
            if d.message is not None and d.message.id in queued:
                row.last_run_at = now
                row.total_run_count += 1
                row.last_task_id = d.message.id
                if d.next_run is None:
                    row.enabled = False  # one-off or clocked: done
        if runs:
            advance_rows(self.alias, [d.row for d in runs])

    # -- upkeep -------------------------------------------------------------------------

    def _report(self, row: PeriodicTask, error: Exception, *, forget: bool = True) -> None:
        """Log a row's problem once per version of the row; with ``forget``, leave the row
        alone until it changes (it cannot even be scheduled)."""
        seen = (self._broken if forget else self._skipped).get(row.id)
        if seen != row.date_changed:
            logger.error("Skipping periodic task %s: %s", printable(row.name),
                         printable(str(error), 1000))
        if forget:
            self._broken[row.id] = row.date_changed
        else:
            self._skipped[row.id] = row.date_changed

    def forget_fixed(self) -> None:
        """Drop broken rows that changed since, so that they are tried again."""
        if not self._broken:
            return
        current = dict(self._rows.filter(id__in=list(self._broken))
                       .values_list("id", "date_changed"))
        self._broken = {i: v for i, v in self._broken.items() if current.get(i) == v}

    def _prune(self, now: dt.datetime) -> None:
        self._pruned = time.monotonic()
        slots = BeatSlot.objects.using(self.alias)
        old = list(slots.filter(queued_at__lt=now - SLOT_HISTORY)
                   .values_list("id", flat=True)[:PRUNE_BATCH])
        if old:
            slots.filter(id__in=old).delete()
