"""Real ``taskworker`` processes against testproject, on SQLite and on PostgreSQL.

Each backend gets a fresh database per module (a temporary SQLite file, or a new PostgreSQL
database that is dropped afterwards); tables are emptied between tests.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import POSTGRES_URL, require_service

ROOT = Path(__file__).resolve().parents[2]
TABLES = ("django_tasks_queuedmessage", "django_tasks_taskresult", "django_tasks_workerstate")


class Project:
    """A migrated database plus helpers to run code and workers against it."""

    def __init__(self, backend: str, url: str, tmp: Path) -> None:
        self.backend, self.url, self.tmp = backend, url, tmp
        self.workers: list[Worker] = []
        self.env = {**os.environ, "DATABASE_URL": url, "TASKS_LOGLEVEL": "INFO",
                    "TASKS_LEASE_SECONDS": "30", "TASKS_HEARTBEAT_SECONDS": "5",
                    "PYTHONUNBUFFERED": "1"}

    def manage(self, *args: str, env: dict[str, str] | None = None,
               timeout: float = 120) -> str:
        proc = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT,
                              env={**self.env, **(env or {})}, capture_output=True,
                              text=True, timeout=timeout)
        if proc.returncode:
            raise AssertionError(f"manage.py {args[0]} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc.stdout

    def shell(self, code: str) -> str:
        return self.manage("shell", "-v", "0", "-c", code)

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        if self.backend == "sqlite":
            with sqlite3.connect(self.url.removeprefix("sqlite:///"), timeout=30) as conn:
                return list(conn.execute(sql.replace("%s", "?"), params).fetchall())
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            cursor = conn.execute(sql, params)  # type: ignore[arg-type]
            return list(cursor.fetchall()) if cursor.description else []

    def worker(self, *args: str, **env: str) -> Worker:
        log = self.tmp / f"worker-{len(self.workers)}.log"
        handle = log.open("w")
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "taskworker", *args], cwd=ROOT,
            env={**self.env, **env}, stdout=handle, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        worker = Worker(proc, log)
        self.workers.append(worker)
        return worker

    def wait(self, what: str, check: Callable[[], bool], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.1)
        logs = "\n".join(f"--- {w.log.name}\n{w.output()[-4000:]}" for w in self.workers)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{logs}")

    def states(self) -> dict[str, str]:
        return dict(self.query("SELECT task_id, state FROM django_tasks_taskresult"))

    def result(self, task_id: str) -> tuple[Any, ...]:
        rows = self.query("SELECT state, result, worker, attempts FROM "
                          "django_tasks_taskresult WHERE task_id = %s", (task_id,))
        return rows[0] if rows else ()


class Worker:
    def __init__(self, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.proc, self.log = proc, log

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)


def _create_postgres(name: str) -> str:
    import psycopg

    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"


def _drop_postgres(name: str) -> None:
    import psycopg

    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    backend = request.param
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield backend, f"sqlite:///{tmp}/e2e.sqlite3"
        return
    require_service("PostgreSQL", "127.0.0.1", 5432)
    name = f"e2e_{uuid.uuid4().hex[:10]}"
    url = _create_postgres(name)
    try:
        yield backend, url
    finally:
        _drop_postgres(name)


@pytest.fixture(scope="module")
def migrated(database: tuple[str, str]) -> tuple[str, str]:
    backend, url = database
    with tempfile.TemporaryDirectory() as tmp:
        Project(backend, url, Path(tmp)).manage("migrate", "-v0")
    return database


@pytest.fixture
def project(migrated: tuple[str, str], tmp_path: Path) -> Iterator[Project]:
    backend, url = migrated
    proj = Project(backend, url, tmp_path)
    for table in TABLES:
        proj.query(f"DELETE FROM {table}")
    try:
        yield proj
    finally:
        for worker in proj.workers:
            worker.kill()
