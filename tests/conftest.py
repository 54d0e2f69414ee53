"""Fixtures shared by every test layer.

Services (PostgreSQL, MariaDB, Redis, RabbitMQ) are looked for on 127.0.0.1. A test that needs one
that is not running is skipped on a laptop and fails under ``CI=true``.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import override_settings

from django_tasks.conf import get_broker, get_result_store, reset_cache

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")
#: The names of the end-to-end tests' ``backend`` parameter.
DATABASES = ("sqlite", "postgres", "mysql")


def service_up(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip (locally) or fail (in CI) when a server the test needs is not reachable."""
    if service_up(host, port):
        return
    message = f"{name} is not reachable on {host}:{port}"
    if IN_CI:
        pytest.fail(f"{message}, and CI=true forbids skipping.")
    pytest.skip(message)


def require_module(module: str, install: str) -> None:
    """Skip (locally) or fail (in CI) when a driver the test needs is not installed."""
    try:
        __import__(module)
    except ImportError:
        message = f"{module} is not installed: install {install}"
        if IN_CI:
            pytest.fail(f"{message}; CI=true forbids skipping.")
        pytest.skip(message)


@contextlib.contextmanager
def schema_of_its_own() -> Iterator[tuple[str, Any]]:
    """A ``sqla+`` URL whose tables are in a PostgreSQL schema made for the caller (kombu
    names its index the same for any table name), and an engine on the database; the
    schema is dropped after. Its connections are named after the schema."""
    require_module("sqlalchemy", "pip install sqlalchemy")
    require_service("PostgreSQL", "127.0.0.1", 5432)
    import sqlalchemy
    from kombu.transport.sqlalchemy import Channel

    schema = f"kombu_{uuid.uuid4().hex[:8]}"
    database = POSTGRES_URL.replace("postgres://", "postgresql+psycopg://", 1)
    engine = sqlalchemy.create_engine(database)
    with engine.begin() as connection:
        connection.execute(sqlalchemy.text(f"CREATE SCHEMA {schema}"))
    try:
        yield (f"sqla+{database}?options=-csearch_path%3D{schema}"
               f"&application_name={schema}"), engine
    finally:
        for key in [key for key in Channel._engines if schema in key]:
            Channel._engines.pop(key)[0].dispose()  # kombu keeps an engine per URL for ever
        with engine.begin() as connection:
            connection.execute(sqlalchemy.text(f"DROP SCHEMA {schema} CASCADE"))
        engine.dispose()


def _tasks_on(url: str) -> Iterator[None]:
    """Broker and result store both at ``url``, set up afresh and dropped after."""
    with override_settings(TASKS_BROKER_URL=url, TASKS_RESULT_BACKEND=url):
        reset_cache()
        yield
    reset_cache()


@pytest.fixture
def database_tasks() -> Iterator[None]:
    """The database broker with database results, in the test database."""
    yield from _tasks_on("django://")


@pytest.fixture
def memory_tasks() -> Iterator[None]:
    """Memory broker and memory result store, fresh for each test."""
    yield from _tasks_on("memory://")


@pytest.fixture
def broker():  # type: ignore[no-untyped-def]
    return get_broker()


@pytest.fixture
def result_store():  # type: ignore[no-untyped-def]
    return get_result_store()


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """With ``-n 2 --dist loadscope`` (the end-to-end and fault run of ``tests/run.sh``): the
    tests of one module on one database go to one process, so that its database is
    migrated once, and every test on RabbitMQ goes to one process, one after another, since
    they share the server's ``default`` queue (Redis tests each have a key prefix of their
    own, and every module a database of its own). xdist's ``loadgroup`` would do this from
    marks, but it renames nodes in a way pytest 9.2 ignores."""
    if config.getoption("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ByDatabaseAndBroker(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            if "amqp" in nodeid.lower():
                return "rabbitmq"
            module, _, rest = nodeid.partition("::")
            ids = re.split(r"[\[\]-]", rest)
            return f"{module}[{next((b for b in DATABASES if b in ids), '')}]"

    return ByDatabaseAndBroker(config, log)
