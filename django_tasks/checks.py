"""System checks for ``TASKS_*`` settings, with stable ids (``django_tasks.E001`` …)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register

from .conf import (
    BROKER_CLASSES,
    BROKER_SCHEMES_SHOWN,
    KOMBU_SCHEMES,
    RESULT_STORE_CLASSES,
    database_alias,
    mask_url,
    task_settings,
    time_limit_error,
    url_scheme,
)

_scheme = url_scheme
_alias = database_alias


#: The package each broker scheme imports, and the extra that installs it.
BROKER_DRIVERS = {"redis": "redis", "rediss": "redis",
                  **dict.fromkeys(("amqp", "amqps", "pyamqp", "kombu+", *KOMBU_SCHEMES), "kombu")}
DRIVER_EXTRAS = {"redis": "redis", "kombu": "kombu"}


def _missing_driver(scheme: str) -> str:
    """The package a broker needs that cannot be imported, or ''."""
    import importlib.util
    import sys

    package = BROKER_DRIVERS.get(scheme, "")
    if not package or package in sys.modules:
        return ""
    try:
        return package if importlib.util.find_spec(package) is None else ""
    except ValueError:  # a module without a spec: it is there
        return ""


@register("django_tasks")
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    broker = task_settings.BROKER_URL
    if _scheme(broker) not in BROKER_CLASSES:
        errors.append(Error(
            f"TASKS_BROKER_URL={mask_url(broker)!r} names no supported broker.",
            hint=f"Use one of: {', '.join(s + '://' for s in BROKER_SCHEMES_SHOWN)}.",
            id="django_tasks.E001"))
    elif (missing := _missing_driver(_scheme(broker))):
        errors.append(Error(
            f"TASKS_BROKER_URL={mask_url(broker)!r} needs the {missing} package, which is not "
            "installed.", hint=f"pip install 'django-taskworker[{DRIVER_EXTRAS[missing]}]'.",
            id="django_tasks.E014"))
    elif _scheme(broker) == "django" and _alias(broker) not in settings.DATABASES:
        errors.append(Error(
            f"TASKS_BROKER_URL={mask_url(broker)!r} names database {_alias(broker)!r}, which "
            "is not in DATABASES.", hint="Use django:// for the default database.",
            id="django_tasks.E002"))
    backend = task_settings.RESULT_BACKEND
    if backend and _scheme(backend) not in RESULT_STORE_CLASSES:
        errors.append(Error(
            f"TASKS_RESULT_BACKEND={mask_url(backend)!r} names no supported result store.",
            hint="Use 'django://' (the default), 'memory://' in tests, or None to store none.",
            id="django_tasks.E003"))
    elif backend and _scheme(backend) == "django" and _alias(backend) not in settings.DATABASES:
        errors.append(Error(
            f"TASKS_RESULT_BACKEND={mask_url(backend)!r} names database {_alias(backend)!r}, "
            "which is "
            "not in DATABASES.", hint="Use django:// for the default database.",
            id="django_tasks.E002"))
    max_deliveries = task_settings.MAX_DELIVERIES
    if not isinstance(max_deliveries, int) or max_deliveries < 1:
        errors.append(Error("TASKS_MAX_DELIVERIES must be an int of at least 1.",
                            id="django_tasks.E004"))
    lease, beat = task_settings.LEASE_SECONDS, task_settings.HEARTBEAT_SECONDS
    if not (isinstance(lease, int | float) and isinstance(beat, int | float)) or beat <= 0 \
            or lease < 2 * beat:
        errors.append(Error(
            f"TASKS_LEASE_SECONDS ({lease}) must be at least twice TASKS_HEARTBEAT_SECONDS "
            f"({beat}), or a live worker's tasks would be delivered again.",
            hint="Keep the defaults (30 and 5) or raise TASKS_LEASE_SECONDS.",
            id="django_tasks.E005"))
    accept = task_settings.ACCEPT_CONTENT
    if list(accept) != ["json"]:
        errors.append(Error(
            f"TASKS_ACCEPT_CONTENT={accept!r}: only ['json'] is supported.",
            hint="Pickle would let anyone who can write to the broker run code in workers.",
            id="django_tasks.E006"))
    for name in ("TIME_LIMIT", "SOFT_TIME_LIMIT"):
        problem = time_limit_error(getattr(task_settings, name))
        if problem:
            errors.append(Error(f"TASKS_{name} {problem}.", id="django_tasks.E008"))
    stall = task_settings.WORKER_STALL_TIMEOUT
    if stall is not None and (time_limit_error(stall) or (
            isinstance(beat, int | float) and stall < 2 * beat)):
        errors.append(Error(
            f"TASKS_WORKER_STALL_TIMEOUT ({stall!r}) must be None or a number of seconds of "
            f"at least twice TASKS_HEARTBEAT_SECONDS ({beat}), or a worker whose heartbeat "
            "is merely due would be taken for stalled.",
            hint="Keep the default (120) or set None to never exit on a stall.",
            id="django_tasks.E009"))
    errors.extend(_check_beat())
    errors.extend(_check_sqlite(broker))
    from .setting_checks import check_names, check_routes, check_types

    errors.extend(check_types())
    errors.extend(check_names())
    errors.extend(check_routes())
    if hasattr(settings, "TASKS") and not isinstance(getattr(settings, "TASKS", None), dict):
        errors.append(Warning(
            "A TASKS setting exists; django_tasks reads only TASKS_* settings (TASKS "
            "belongs to Django's own Tasks framework).", id="django_tasks.W001"))
    return errors


def _check_beat() -> list[CheckMessage]:
    from .exceptions import ConfigurationError
    from .schedules.entries import definitions

    errors: list[CheckMessage] = []
    try:
        definitions(task_settings.BEAT_SCHEDULE)
    except ConfigurationError as exc:
        errors.append(Error(str(exc), hint="Each entry is {'task': 'app.tasks.name', "
                            "'schedule': 30.0 | timedelta | crontab(...) | schedule(...), "
                            "'args': [...], 'kwargs': {...}, 'options': {...}}.",
                            id="django_tasks.E010"))
    tick = task_settings.BEAT_TICK_SECONDS
    if time_limit_error(tick) or not (isinstance(tick, int | float) and tick <= 60):
        errors.append(Error(f"TASKS_BEAT_TICK_SECONDS ({tick!r}) must be a number of seconds "
                            "more than 0 and at most 60.", id="django_tasks.E011"))
    return errors


def _check_sqlite(broker: object) -> list[CheckMessage]:
    if _scheme(broker) != "django" or _alias(broker) not in settings.DATABASES:
        return []
    database = settings.DATABASES[_alias(broker)]
    if database.get("ENGINE") != "django.db.backends.sqlite3":
        return []
    import sqlite3

    if sqlite3.sqlite_version_info < (3, 35):
        return [Error(
            f"The database broker needs SQLite 3.35 or newer (UPDATE … RETURNING); this "
            f"Python has SQLite {sqlite3.sqlite_version}.",
            hint="Use a Python built with a newer SQLite, or PostgreSQL.",
            id="django_tasks.E007")]
    options = database.get("OPTIONS") or {}
    if str(options.get("transaction_mode", "")).upper() == "IMMEDIATE" \
            and float(options.get("timeout", 5)) >= 10:
        return []
    return [Warning(
        "The database broker on SQLite: worker processes and web requests write to one file, "
        "and SQLite's defaults make them fail with 'database is locked' under load.",
        hint="Set DATABASES OPTIONS {'transaction_mode': 'IMMEDIATE', 'timeout': 30, "
             "'init_command': 'PRAGMA journal_mode=WAL;'} (see the production how-to in the docs).",
        id="django_tasks.W002")]
