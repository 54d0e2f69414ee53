"""System checks that read every ``TASKS_*`` setting's type and range (``E012``), name the
``TASKS_*`` counterpart of a ``CELERY_*`` setting (``W003``), and suggest the setting a
misspelt ``TASKS_*`` name was meant to be (``W004``)."""

from __future__ import annotations

import datetime as dt
import difflib
from collections.abc import Callable

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning

from .conf import DEFAULTS
from .message import name_error
from .ratelimit import rate_error

Rule = tuple[Callable[[object], bool], str]


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _positive(value: object) -> bool:
    return _number(value) and value > 0  # type: ignore[operator]


def _whole(least: int) -> Callable[[object], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= least


def _optional(rule: Callable[[object], bool]) -> Callable[[object], bool]:
    return lambda v: v is None or rule(v)


def _text(value: object) -> bool:
    return isinstance(value, str)


def _expiry(value: object) -> bool:
    if isinstance(value, dt.timedelta):
        return value > dt.timedelta(0)
    return value is None or _positive(value)


#: What each setting must be, for the settings no more specific check covers (the broker
#: URL: E001; the lease and heartbeat: E005; deliveries, content, limits, stalls, beat:
#: E004, E006, E008, E009, E010, E011).
RULES: dict[str, Rule] = {
    "RESULT_BACKEND": (_optional(lambda v: isinstance(v, str)), "a URL or None"),
    "DEFAULT_QUEUE": (lambda v: not name_error(v, "queue"), "a queue name (printable text "
                                                             "of at most 255 characters)"),
    "ALWAYS_EAGER": (lambda v: isinstance(v, bool), "True or False"),
    "EAGER_PROPAGATES": (lambda v: isinstance(v, bool), "True or False"),
    "TRACK_STARTED": (lambda v: isinstance(v, bool), "True or False"),
    "STORE_PENDING": (lambda v: isinstance(v, bool), "True or False"),
    "PREPARED_STATEMENTS": (lambda v: isinstance(v, bool), "True or False"),
    "SENSITIVE_TASKS": (lambda v: isinstance(v, list | tuple)
                        and all(isinstance(p, str) for p in v),
                        "a list of task names or globs such as 'accounts.tasks.*'"),
    "RESULT_EXPIRES": (_expiry, "a timedelta or a number of seconds more than 0, or None "
                                "to keep results for ever"),
    "WORKER_PREFETCH": (_whole(1), "a whole number of at least 1"),
    "WORKER_SHUTDOWN_TIMEOUT": (lambda v: _number(v) and v >= 0,  # type: ignore[operator]
                                "a number of seconds, 0 or more"),
    "WORKER_CONCURRENCY": (_optional(_whole(1)), "a whole number of at least 1, or None for "
                                                 "one per CPU"),
    "WORKER_MAX_TASKS_PER_CHILD": (_optional(_whole(1)), "a whole number of at least 1, or "
                                                         "None"),
    "WORKER_MAX_MEMORY_PER_CHILD": (_optional(_whole(1)), "a whole number of KiB of at least "
                                                          "1, or None"),
    "WORKER_HEALTH_FILE": (_optional(lambda v: isinstance(v, str) and bool(v)),
                           "a file path, or None"),
    "POLL_INTERVAL": (lambda v: _positive(v) and v <= 60,  # type: ignore[operator]
                      "a number of seconds more than 0 and at most 60"),
    "PRUNE_BATCH_SIZE": (_whole(1), "a whole number of at least 1"),
    "DEFAULT_RATE_LIMIT": (lambda v: not rate_error(v), "None, or a rate such as '10/s', "
                                                       "'100/m' or '1000/h' (0: no limit)"),
    "BROKER_TRANSPORT_OPTIONS": (lambda v: isinstance(v, dict) and all(map(_text, v)),
                                 "a dict of kombu transport options by name"),
}

#: Celery settings (Django-style names) and the TASKS_* setting that takes their place.
CELERY_COUNTERPARTS = {
    "CELERY_BROKER_URL": "TASKS_BROKER_URL",
    "CELERY_BROKER_TRANSPORT_OPTIONS": "TASKS_BROKER_TRANSPORT_OPTIONS",
    "CELERY_RESULT_BACKEND": "TASKS_RESULT_BACKEND",
    "CELERY_TASK_ALWAYS_EAGER": "TASKS_ALWAYS_EAGER",
    "CELERY_TASK_EAGER_PROPAGATES": "TASKS_EAGER_PROPAGATES",
    "CELERY_TASK_DEFAULT_QUEUE": "TASKS_DEFAULT_QUEUE",
    "CELERY_RESULT_EXPIRES": "TASKS_RESULT_EXPIRES",
    "CELERY_TASK_TRACK_STARTED": "TASKS_TRACK_STARTED",
    "CELERY_TASK_TIME_LIMIT": "TASKS_TIME_LIMIT",
    "CELERY_TASK_SOFT_TIME_LIMIT": "TASKS_SOFT_TIME_LIMIT",
    "CELERY_TASK_DEFAULT_RATE_LIMIT": "TASKS_DEFAULT_RATE_LIMIT",
    "CELERY_ACCEPT_CONTENT": "TASKS_ACCEPT_CONTENT",
    "CELERY_WORKER_CONCURRENCY": "TASKS_WORKER_CONCURRENCY",
    "CELERY_WORKER_MAX_TASKS_PER_CHILD": "TASKS_WORKER_MAX_TASKS_PER_CHILD",
    "CELERY_WORKER_MAX_MEMORY_PER_CHILD": "TASKS_WORKER_MAX_MEMORY_PER_CHILD",
    "CELERY_WORKER_PREFETCH_MULTIPLIER": "TASKS_WORKER_PREFETCH",
    "CELERY_BEAT_SCHEDULE": "TASKS_BEAT_SCHEDULE",
    "CELERY_TASK_ROUTES": "TASKS_TASK_ROUTES",
}


def check_types() -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    for name, (fits, what) in RULES.items():
        value = getattr(settings, f"TASKS_{name}", DEFAULTS[name])
        if not fits(value):
            errors.append(Error(f"TASKS_{name} = {value!r} must be {what}.",
                                hint=f"Remove it for the default ({DEFAULTS[name]!r}).",
                                id="django_tasks.E012"))
    return errors


def check_routes() -> list[CheckMessage]:
    """E013: ``TASKS_TASK_ROUTES`` in a shape Celery's ``task_routes`` has, and routes that
    name a queue and a priority django_tasks can use."""
    from .exceptions import ConfigurationError
    from .routing import routers

    try:
        routers(getattr(settings, "TASKS_TASK_ROUTES", None))
    except ConfigurationError as exc:
        return [Error(str(exc), hint="See 'Routing' in the settings reference.",
                      id="django_tasks.E013")]
    return []


def check_names() -> list[CheckMessage]:
    found: list[CheckMessage] = []
    known = [f"TASKS_{name}" for name in DEFAULTS]
    for name in dir(settings):
        if name in CELERY_COUNTERPARTS:
            counterpart = CELERY_COUNTERPARTS[name]
            found.append(Warning(
                f"{name} is set, but django_tasks reads {counterpart}; {name} has no "
                "effect.", hint=f"Rename it {counterpart} (check the value's meaning in "
                                "the settings reference), or remove it.",
                id="django_tasks.W003"))
        elif name.startswith("TASKS_") and name not in known:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
            found.append(Warning(
                f"{name} is not a django_tasks setting; it has no effect.",
                hint=f"Did you mean {close[0]}?" if close else
                "See the settings reference for the known TASKS_* settings.",
                id="django_tasks.W004"))
    return found
