"""Settings of django_tasks, read once and again whenever the settings are overridden, so
``override_settings`` works.

Every setting has the ``TASKS_`` prefix and is declared once below, with its type and its
default; ``DEFAULTS`` is derived from those declarations. The types say what the code
expects; the system checks (``checks.py``) tell a project whose values do not fit.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings as django_settings

if TYPE_CHECKING:
    from .brokers.base import Broker
    from .results.base import ResultStore

T = TypeVar("T")


#: Values read so far, by name without the prefix, and the settings object they were read
#: from. Reading a setting Django does not have costs an exception each time, and some are
#: read per message. ``override_settings`` (and pytest-django's ``settings``) puts another
#: settings object in place, which empties it.
_read: dict[str, Any] = {}
_read_from: list[object] = [None]
# LazySettings' own attributes; ``_wrapped`` is the settings object in use (read here, not
# through the attribute, which Django's LazyObject looks up in Python code).
_lazy = object.__getattribute__(django_settings, "__dict__")


class Setting(Generic[T]):
    """One ``TASKS_*`` setting: read from Django's settings, else the default; kept until
    the settings are overridden."""

    def __init__(self, default: T) -> None:
        self.default = default
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, objtype: type | None = None) -> Setting[T]: ...
    @overload
    def __get__(self, obj: object, objtype: type | None = None) -> T: ...

    def __get__(self, obj: object | None, objtype: type | None = None) -> T | Setting[T]:
        if obj is None:
            return self
        wrapped = _lazy.get("_wrapped")
        if wrapped is not _read_from[0]:
            _read.clear()
            _read_from[0] = wrapped
        try:
            return _read[self.name]
        except KeyError:
            value = _read[self.name] = getattr(django_settings, f"TASKS_{self.name}",
                                               self.default)
            return value


class TaskSettings:
    """Attribute access to ``TASKS_*`` settings with defaults."""

    BROKER_URL = Setting[str]("django://")
    BROKER_TRANSPORT_OPTIONS = Setting[dict[str, Any]]({})
    RESULT_BACKEND = Setting[str | None]("django://")
    DEFAULT_QUEUE = Setting[str]("default")
    TASK_ROUTES = Setting[Any](None)
    ALWAYS_EAGER = Setting[bool](False)
    EAGER_PROPAGATES = Setting[bool](True)
    RESULT_EXPIRES = Setting[timedelta | int | float | None](timedelta(days=1))
    MAX_DELIVERIES = Setting[int](3)
    LEASE_SECONDS = Setting[float](30.0)
    HEARTBEAT_SECONDS = Setting[float](5.0)
    WORKER_PREFETCH = Setting[int](256)
    WORKER_SHUTDOWN_TIMEOUT = Setting[float](25.0)
    WORKER_CONCURRENCY = Setting[int | None](None)
    WORKER_MAX_TASKS_PER_CHILD = Setting[int | None](None)
    WORKER_STALL_TIMEOUT = Setting[float | None](120.0)
    WORKER_HEALTH_FILE = Setting[str | None](None)
    WORKER_MAX_MEMORY_PER_CHILD = Setting[int | None](None)
    POLL_INTERVAL = Setting[float](1.0)
    TRACK_STARTED = Setting[bool](False)
    STORE_PENDING = Setting[bool](True)
    PREPARED_STATEMENTS = Setting[bool](True)
    SENSITIVE_TASKS = Setting[list[str]]([])
    TIME_LIMIT = Setting[float | None](None)
    SOFT_TIME_LIMIT = Setting[float | None](None)
    DEFAULT_RATE_LIMIT = Setting[str | float | None](None)
    PRUNE_BATCH_SIZE = Setting[int](1000)
    ACCEPT_CONTENT = Setting[list[str]](["json"])
    BEAT_SCHEDULE = Setting[dict[str, Any]]({})
    BEAT_TICK_SECONDS = Setting[float](1.0)

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


#: Every setting's default, by name without the prefix.
DEFAULTS: dict[str, Any] = {
    name: value.default for name, value in vars(TaskSettings).items()
    if isinstance(value, Setting)
}

task_settings = TaskSettings()


def database_alias(url: object) -> str:
    """The database alias a ``django://`` URL names: ``django://`` is ``default``."""
    rest = str(url).split("://", 1)[1] if "://" in str(url) else ""
    return rest.strip("/") or "default"


def mask_url(url: object) -> str:
    """``url`` with its password replaced by ``**``, for banners, logs and checks."""
    text = str(url)
    try:
        parts = urlsplit(text)
        password = parts.password
    except ValueError:  # not a URL at all: nothing to find in it
        return text
    if not password:
        return text
    userinfo, _, host = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:**@{host}"))


def time_limit_error(value: object) -> str:
    """Why ``value`` is not a time limit (a positive number of seconds, or None); else ''."""
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        return f"must be a positive number of seconds or None, not {value!r}"
    return ""


# Brokers and result stores are plug-ins chosen by URL scheme and loaded by dotted path,
# so the core never imports the layer above it.
#: kombu's transports taken by their own scheme (or ``<scheme>+...``: ``sqla+postgresql``).
KOMBU_SCHEMES = ("sqs", "filesystem", "sqlalchemy", "sqla", "mongodb", "zookeeper", "consul",
                 "etcd", "azurestoragequeues", "azureservicebus", "gcpubsub", "confluentkafka",
                 "kafka", "qpid", "pyro", "slmq", "pgmq")
BROKER_CLASSES = {
    "django": "django_tasks.brokers.database.DatabaseBroker",
    "memory": "django_tasks.brokers.memory.MemoryBroker",
    "redis": "django_tasks.brokers.redis.RedisBroker",
    "rediss": "django_tasks.brokers.redis.RedisBroker",
    "amqp": "django_tasks.brokers.amqp.AmqpBroker",
    "amqps": "django_tasks.brokers.amqp.AmqpBroker",
    "pyamqp": "django_tasks.brokers.amqp.AmqpBroker",
    # kombu's other transports: any as ``kombu+<transport>://``, these by their own scheme
    # too, as Celery's broker URLs name them (``redis``, ``amqp`` and ``memory`` are ours).
    "kombu+": "django_tasks.brokers.kombu_transport.KombuBroker",
    **{scheme: "django_tasks.brokers.kombu_transport.KombuBroker" for scheme in KOMBU_SCHEMES},
}
#: The schemes named in errors: the rest of ``BROKER_CLASSES`` are kombu's transports.
BROKER_SCHEMES_SHOWN = ("django", "redis", "rediss", "amqp", "amqps", "pyamqp", "memory",
                         "sqs", "filesystem", "kombu+<transport>")
RESULT_STORE_CLASSES = {
    "django": "django_tasks.results.database.DatabaseResultStore",
    "memory": "django_tasks.results.memory.MemoryResultStore",
}
_brokers: dict[str, Broker] = {}
_stores: dict[str, ResultStore] = {}


def url_scheme(url: object) -> str:
    """The key of ``BROKER_CLASSES`` (or ``RESULT_STORE_CLASSES``) that ``url`` selects: its
    scheme, ``kombu+`` for every ``kombu+<transport>://``, and the transport of a scheme that
    names one before a ``+`` (``sqla`` of ``sqla+postgresql://``)."""
    text = str(url)
    scheme = text.split("://", 1)[0] if "://" in text else ""
    first = scheme.split("+", 1)[0]
    if first == "kombu" and "+" in scheme:
        return "kombu+"
    return first if first in KOMBU_SCHEMES else scheme


def _load_class(url: str, classes: dict[str, str], setting: str) -> Any:
    from django.utils.module_loading import import_string

    from .exceptions import ConfigurationError

    scheme = url_scheme(url)
    if scheme not in classes:
        shown = BROKER_SCHEMES_SHOWN if classes is BROKER_CLASSES else tuple(classes)
        raise ConfigurationError(
            f"{setting}={mask_url(url)!r} is not supported; use one of "
            f"{', '.join(s + '://' for s in shown)}."
        )
    return import_string(classes[scheme])


def get_broker() -> Broker:
    """The broker for ``TASKS_BROKER_URL`` (one instance per URL and process)."""
    from .brokers.base import Broker

    url = str(task_settings.BROKER_URL)
    if url not in _brokers:
        cls = _load_class(url, BROKER_CLASSES, "TASKS_BROKER_URL")
        if not (isinstance(cls, type) and issubclass(cls, Broker)):
            raise TypeError(f"{cls!r} is not a Broker")
        _brokers[url] = cls(url)
    return _brokers[url]


def get_result_store() -> ResultStore | None:
    """The result store for ``TASKS_RESULT_BACKEND``, or ``None`` when results are off."""
    from .results.base import ResultStore

    url = task_settings.RESULT_BACKEND
    if not url:
        return None
    url = str(url)
    if url not in _stores:
        cls = _load_class(url, RESULT_STORE_CLASSES, "TASKS_RESULT_BACKEND")
        if not (isinstance(cls, type) and issubclass(cls, ResultStore)):
            raise TypeError(f"{cls!r} is not a ResultStore")
        _stores[url] = cls(url)
    return _stores[url]


def reset_cache() -> None:
    """Forget cached brokers and stores (on ``setting_changed`` and after ``fork``)."""
    for broker in _brokers.values():
        broker.close()
    _brokers.clear()
    _stores.clear()
