"""Settings of django_tasks, read on every access so ``override_settings`` works.

Every setting has the ``TASKS_`` prefix; the defaults live in ``DEFAULTS`` and nowhere else.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from django.conf import settings as django_settings

DEFAULTS: dict[str, Any] = {
    "BROKER_URL": "django://",
    "RESULT_BACKEND": "django://",
    "DEFAULT_QUEUE": "default",
    "ALWAYS_EAGER": False,
    "EAGER_PROPAGATES": True,
    "RESULT_EXPIRES": timedelta(days=1),
    "MAX_DELIVERIES": 3,
    "LEASE_SECONDS": 30.0,
    "HEARTBEAT_SECONDS": 5.0,
    "WORKER_PREFETCH": 256,
    "WORKER_SHUTDOWN_TIMEOUT": 25.0,
    "WORKER_CONCURRENCY": None,
    "WORKER_MAX_TASKS_PER_CHILD": None,
    "WORKER_STALL_TIMEOUT": 120.0,
    "WORKER_HEALTH_FILE": None,
    "WORKER_MAX_MEMORY_PER_CHILD": None,
    "POLL_INTERVAL": 0.05,
    "TRACK_STARTED": False,
    "TIME_LIMIT": None,
    "SOFT_TIME_LIMIT": None,
    "PRUNE_BATCH_SIZE": 1000,
    "ACCEPT_CONTENT": ["json"],
}


def database_alias(url: object) -> str:
    """The database alias a ``django://`` URL names: ``django://`` is ``default``."""
    rest = str(url).split("://", 1)[1] if "://" in str(url) else ""
    return rest.strip("/") or "default"


def time_limit_error(value: object) -> str:
    """Why ``value`` is not a time limit (a positive number of seconds, or None); else ''."""
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        return f"must be a positive number of seconds or None, not {value!r}"
    return ""


def _prefixed(name: str) -> str:
    return f"TASKS_{name}"


class TaskSettings:
    """Attribute access to ``TASKS_*`` settings with defaults; nothing is cached."""

    def __getattr__(self, name: str) -> Any:
        if name not in DEFAULTS:
            raise AttributeError(f"unknown django_tasks setting {name!r}")
        return getattr(django_settings, _prefixed(name), DEFAULTS[name])

    @property
    def result_expires(self) -> timedelta | None:
        value = self.RESULT_EXPIRES
        if value is None:
            return None
        if isinstance(value, int | float):
            return timedelta(seconds=value)
        return value

    @property
    def concurrency(self) -> int:
        return int(self.WORKER_CONCURRENCY or os.cpu_count() or 1)


task_settings = TaskSettings()


# Brokers and result stores are plug-ins chosen by URL scheme and loaded by dotted path,
# so the core never imports the layer above it.
BROKER_CLASSES = {
    "django": "django_tasks.brokers.database.DatabaseBroker",
    "memory": "django_tasks.brokers.memory.MemoryBroker",
}
RESULT_STORE_CLASSES = {
    "django": "django_tasks.results.database.DatabaseResultStore",
    "memory": "django_tasks.results.memory.MemoryResultStore",
}
_cache: dict[tuple[str, str], Any] = {}


def _load(kind: str, url: str, classes: dict[str, str], setting: str) -> Any:
    from django.utils.module_loading import import_string

    from .exceptions import ConfigurationError

    key = (kind, url)
    if key not in _cache:
        scheme = url.split("://", 1)[0] if "://" in url else ""
        if scheme not in classes:
            raise ConfigurationError(
                f"{setting}={url!r} is not supported; use one of "
                f"{', '.join(s + '://' for s in classes)}."
            )
        _cache[key] = import_string(classes[scheme])(url)
    return _cache[key]


def get_broker() -> Any:
    """The broker for ``TASKS_BROKER_URL`` (one instance per URL and process)."""
    return _load("broker", str(task_settings.BROKER_URL), BROKER_CLASSES, "TASKS_BROKER_URL")


def get_result_store() -> Any:
    """The result store for ``TASKS_RESULT_BACKEND``, or ``None`` when results are off."""
    url = task_settings.RESULT_BACKEND
    if not url:
        return None
    return _load("results", str(url), RESULT_STORE_CLASSES, "TASKS_RESULT_BACKEND")


def reset_cache() -> None:
    """Forget cached brokers and stores (on ``setting_changed`` and after ``fork``)."""
    for instance in _cache.values():
        close = getattr(instance, "close", None)
        if close is not None:
            close()
    _cache.clear()
