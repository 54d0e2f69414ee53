"""``TASKS_BEAT_SCHEDULE`` (Celery's ``beat_schedule`` shape) synced into the database.

When the beat starts, each entry becomes (or updates) the ``PeriodicTask`` of the same name,
marked as coming from the settings. Which side wins when the admin edited such a row:

- the entry did not change since the last sync, the row did: **the admin edit wins** (kept,
  logged at INFO);
- the entry changed since the last sync: **the settings win**, and if the row was edited in
  the admin meanwhile, the overwrite is logged as a WARNING naming the row.

An entry removed from the settings disables its row; nothing is deleted.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, transaction

from .. import serialization
from ..message import printable
from ..models import ClockedSchedule, CrontabSchedule, IntervalSchedule, PeriodicTask
from ..schedules.entries import definitions

logger = logging.getLogger("django_tasks.beat")


@dataclass
class SyncReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    kept_admin_edit: list[str] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)


def _current(row: PeriodicTask) -> dict[str, Any]:
    """A row's fields in the shape of a definition, to compare with one."""
    if row.interval is not None:
        plan: dict[str, Any] = {"kind": "interval", "every": row.interval.every,
                                "period": row.interval.period}
    elif row.crontab is not None:
        c = row.crontab
        plan = {"kind": "crontab", "minute": c.minute, "hour": c.hour,
                "day_of_week": c.day_of_week, "day_of_month": c.day_of_month,
                "month_of_year": c.month_of_year, "timezone": c.timezone}
    elif row.clocked is not None:
        plan = {"kind": "clocked", "clocked_time": row.clocked.clocked_time.isoformat()}
    else:
        plan = {}
    return {
        "task": row.task, "schedule": plan, "args": _canonical(row.args, "[]"),
        "kwargs": _canonical(row.kwargs, "{}"), "queue": row.queue or None,
        "priority": row.priority,
        "expires": row.expires.isoformat() if row.expires else None,
        "expire_seconds": row.expire_seconds, "one_off": row.one_off, "enabled": row.enabled,
        "description": row.description,
    }


def _canonical(text: str, empty: str) -> str:
    try:
        return serialization.dumps(json.loads(text or empty))
    except (TypeError, ValueError):
        return text


def _schedule_row(plan: dict[str, Any], alias: str) -> dict[str, Any]:
    """The schedule model row for ``plan`` (an existing equal one is reused)."""
    fields = {k: v for k, v in plan.items() if k != "kind"}
    if plan["kind"] == "interval":
        return {"interval": IntervalSchedule.objects.using(alias).get_or_create(**fields)[0],
                "crontab": None, "clocked": None}
    if plan["kind"] == "crontab":
        return {"crontab": CrontabSchedule.objects.using(alias).get_or_create(**fields)[0],
                "interval": None, "clocked": None}
    at = dt.datetime.fromisoformat(fields["clocked_time"])
    return {"clocked": ClockedSchedule.objects.using(alias).get_or_create(clocked_time=at)[0],
            "interval": None, "crontab": None}


def _apply(row: PeriodicTask, wanted: dict[str, Any], alias: str) -> None:
    for key, value in wanted.items():
        if key == "schedule":
            for attr, model in _schedule_row(value, alias).items():
                setattr(row, attr, model)
        elif key == "expires":
            row.expires = dt.datetime.fromisoformat(value) if value else None
        else:
            setattr(row, key, value)
    row.source = "settings"
    row.synced = json.dumps(wanted, sort_keys=True)
    row.save(using=alias)


def sync(setting: object, alias: str = "default") -> SyncReport:
    """Bring the database in line with ``TASKS_BEAT_SCHEDULE`` (see the module docstring).

    Beats starting together may sync at once: one that loses a race to create a row syncs
    again, and then finds it."""
    wanted_all = definitions(setting)
    try:
        return _sync(wanted_all, alias)
    except IntegrityError:
        return _sync(wanted_all, alias)


def _sync(wanted_all: dict[str, dict[str, Any]], alias: str) -> SyncReport:
    report = SyncReport()
    rows = PeriodicTask.objects.using(alias).select_related("interval", "crontab", "clocked")
    with transaction.atomic(using=alias):
        existing = {row.name: row for row in rows.filter(name__in=list(wanted_all))}
        for name, wanted in wanted_all.items():
            row = existing.get(name)
            if row is None:
                _apply(PeriodicTask(name=name), wanted, alias)
                report.created.append(name)
                continue
            current = _current(row)
            last = json.loads(row.synced) if row.synced else None
            if current == wanted:
                if last != wanted:
                    _apply(row, wanted, alias)
                continue
            if last is not None and wanted == last:
                logger.info("Periodic task %s was edited in the admin and TASKS_BEAT_SCHEDULE "
                            "has not changed since the last sync: the admin edit is kept",
                            printable(name))
                report.kept_admin_edit.append(name)
                continue
            if last is not None and current != last:
                logger.warning("Periodic task %s was edited in the admin, and its entry in "
                               "TASKS_BEAT_SCHEDULE changed since: the settings win, the admin "
                               "edit is overwritten", printable(name))
            _apply(row, wanted, alias)
            report.updated.append(name)
        gone = rows.filter(source="settings", enabled=True).exclude(name__in=list(wanted_all))
        report.disabled = list(gone.values_list("name", flat=True))
        for name in report.disabled:
            logger.warning("Periodic task %s is no longer in TASKS_BEAT_SCHEDULE: disabled "
                           "(delete it in the admin if it is not needed)", printable(name))
        gone.update(enabled=False)
    return report
