"""Fixtures of the core unit tests: tasks that unregister themselves, and a broker clock."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.test import override_settings

from django_tasks.brokers import database as database_broker
from django_tasks.brokers import memory as memory_broker
from django_tasks.brokers import redis as redis_broker
from django_tasks.brokers.base import Broker
from django_tasks.brokers.database import DatabaseBroker
from django_tasks.brokers.memory import MemoryBroker
from django_tasks.brokers.redis import RedisBroker
from django_tasks.registry import registry
from django_tasks.task import Task, shared_task
from tests.conftest import require_service


@pytest.fixture
def define() -> Iterator[Callable[..., Any]]:
    """``@define`` / ``@define(**options)``: ``@shared_task``, unregistered after the test."""
    added: list[str] = []

    def register(func: Callable[..., Any], options: dict[str, Any]) -> Task[Any, Any]:
        existed = options.get("name") in registry
        task: Task[Any, Any] = shared_task(**options)(func)
        if not existed:
            added.append(task.name)
        return task

    def define(fn: Callable[..., Any] | None = None, **options: Any) -> Any:
        if fn is not None:
            return register(fn, options)
        return lambda func: register(func, options)

    yield define
    for name in added:
        registry.unregister(name)


@pytest.fixture
def eager() -> Iterator[None]:
    """``TASKS_ALWAYS_EAGER = True``: ``delay()`` runs the task here, through JSON."""
    with override_settings(TASKS_ALWAYS_EAGER=True):
        yield


class Clock:
    """The time the brokers see; starts at the real time and moves only when told."""

    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """Freeze the clock of the memory, database and Redis brokers (leases, delays, etas)."""
    frozen = Clock()
    monkeypatch.setattr(memory_broker, "_now", frozen)
    monkeypatch.setattr(database_broker, "_now", frozen)
    monkeypatch.setattr(redis_broker, "_now", frozen)
    return frozen


def nested_list(levels: int) -> list[Any]:
    """``[[[...]]]`` nested ``levels`` deep, built without recursion."""
    outer: list[Any] = []
    inner = outer
    for _ in range(levels):
        inner.append([])
        inner = inner[0]
    return outer


#: Databases of the local Redis that the unit tests have to themselves, one per pytest-xdist
#: process (``-n``), so that one process's flush never empties another's; flushed before each
#: test that uses it.
REDIS_TEST_DBS = (13, 10, 9, 8, 7, 6)
_XDIST_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
REDIS_TEST_URL = f"redis://127.0.0.1:6379/{REDIS_TEST_DBS[_XDIST_WORKER]}"


def flushed_redis(url: str = REDIS_TEST_URL) -> Iterator[RedisBroker]:
    """A Redis broker on a flushed test database (skipped where no Redis runs; a failure
    under CI=true)."""
    require_service("Redis", "127.0.0.1", 6379)
    broker = RedisBroker(url)
    broker._client.flushdb()
    try:
        yield broker
    finally:
        broker.close()


# The marker, not getfixturevalue("db"): pytest-django sets up test databases only for
# tests that ask for them where it can see it before the session starts.
@pytest.fixture(params=["memory", pytest.param("database", marks=pytest.mark.django_db),
                        "redis"])
def any_broker(request: pytest.FixtureRequest, clock: Clock) -> Iterator[Broker]:
    """Each broker in turn, for tests of the contract every broker keeps."""
    if request.param == "database":
        yield DatabaseBroker("django://")
    elif request.param == "redis":
        yield from flushed_redis()
    else:
        yield MemoryBroker("memory://")
