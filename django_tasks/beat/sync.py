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
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, transaction

from .. import serialization
from ..exceptions import ConfigurationError
from ..message import name_error, printable
from ..models import ClockedSchedule, CrontabSchedule, IntervalSchedule, PeriodicTask
from ..schedules import ScheduleError, clocked, crontab, schedule, to_schedule

logger = logging.getLogger("django_tasks.beat")
_KEYS = {"task", "schedule", "args", "kwargs", "options", "relative", "enabled",
         "description", "one_off", "start_time"}
_OPTIONS = {"queue", "priority", "expires", "expire_seconds"}


@dataclass
class SyncReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    kept_admin_edit: list[str] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)


def definitions(setting: object) -> dict[str, dict[str, Any]]:
    """Each entry of ``TASKS_BEAT_SCHEDULE`` as the row fields it stands for, checked;
    :class:`ConfigurationError` naming the entry and what to fix."""
    if not isinstance(setting, Mapping):
        raise ConfigurationError("TASKS_BEAT_SCHEDULE must be a dict of name -> entry, not "
                                 f"{type(setting).__name__}")
    return {name: _definition(name, entry) for name, entry in setting.items()}


def _definition(name: object, entry: object) -> dict[str, Any]:
    where = f"TASKS_BEAT_SCHEDULE[{name!r}]"
    if not isinstance(name, str) or len(name) > 200 or name_error(name, "name"):
        raise ConfigurationError(f"{where}: the name must be printable text of at most 200 "
                                 "characters")
    if not isinstance(entry, Mapping):
        raise ConfigurationError(f"{where} must be a dict with 'task' and 'schedule'")
    unknown = set(entry) - _KEYS
    if unknown:
        raise ConfigurationError(f"{where}: unknown key(s) {sorted(unknown)}; use "
                                 f"{sorted(_KEYS)}")
    task = entry.get("task")
    if not isinstance(task, str) or name_error(task, "'task'"):
        raise ConfigurationError(f"{where}: 'task' must name a task ('app.tasks.name')")
    try:
        plan = to_schedule(entry.get("schedule"))
        args = serialization.dumps(list(entry.get("args") or ()), f"{where} args")
        kwargs = serialization.dumps(dict(entry.get("kwargs") or {}), f"{where} kwargs")
    except (ScheduleError, TypeError, ValueError) as exc:
        raise ConfigurationError(f"{where}: {exc}") from None
    options = entry.get("options") or {}
    if not isinstance(options, Mapping) or set(options) - _OPTIONS:
        raise ConfigurationError(f"{where}: 'options' may hold {sorted(_OPTIONS)}")
    priority, queue = options.get("priority"), options.get("queue")
    if priority is not None and (isinstance(priority, bool) or priority not in range(10)):
        raise ConfigurationError(f"{where}: options priority must be an int from 0 to 9")
    if queue is not None and name_error(queue, "queue"):
        raise ConfigurationError(f"{where}: options {name_error(queue, 'queue')}")
    expires, expire_seconds = options.get("expires"), options.get("expire_seconds")
    if isinstance(expires, int | float) and not isinstance(expires, bool):
        expire_seconds, expires = int(expires), None  # Celery: seconds after queueing
    return {
        "task": task, "schedule": _schedule_fields(plan), "args": args, "kwargs": kwargs,
        "queue": queue or None, "priority": priority,
        "expires": expires.isoformat() if isinstance(expires, dt.datetime) else None,
        "expire_seconds": expire_seconds, "one_off": bool(entry.get("one_off", False)),
        "enabled": bool(entry.get("enabled", True)),
        "description": str(entry.get("description") or ""),
    }


def _schedule_fields(plan: object) -> dict[str, Any]:
    if isinstance(plan, schedule):
        return {"kind": "interval", **plan.as_fields()}
    if isinstance(plan, crontab):
        return {"kind": "crontab", **plan.as_fields()}
    if isinstance(plan, clocked):
        return {"kind": "clocked", "clocked_time": plan.at.isoformat()}
    raise ConfigurationError(f"{plan!r} is not a schedule the database can store")


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
