"""``TASKS_BEAT_SCHEDULE`` read and checked: each entry as the fields of the row it stands for.

Celery's ``beat_schedule`` shape: ``{"name": {"task": ..., "schedule": ..., "args": ...,
"kwargs": ..., "options": {"queue", "priority", "expires"}}}``. Used by the system checks
and by the beat's sync (``beat/sync.py``); no database here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from .. import serialization
from ..exceptions import ConfigurationError
from ..message import name_error
from .base import ScheduleError
from .coerce import to_schedule
from .cron import crontab
from .interval import clocked, schedule

# "relative" is Celery's (rounding interval runs to the period); accepted and ignored.
_KEYS = {"task", "schedule", "args", "kwargs", "options", "relative", "enabled",
         "description", "one_off"}
_OPTIONS = {"queue", "priority", "expires", "expire_seconds"}


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


