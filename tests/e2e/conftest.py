"""Real ``taskworker`` processes against testproject, on SQLite, PostgreSQL and MariaDB.

pytest-django's test database is not used: each test module gets, per backend, a database of
its own (a temporary SQLite file, or a new PostgreSQL or MariaDB database dropped afterwards),
migrated by
``manage.py migrate`` in a subprocess; the task tables are emptied before each test. Tasks are
queued through ``manage.py shell -c`` and outcomes read straight from the tables, so the test
process never shares a connection or a setting with the workers.

Every worker runs in a session of its own and its whole process group is SIGKILLed when the
test ends; its output goes to a file, attached to the report of a failed test.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import MYSQL_URL, POSTGRES_URL, require_module, require_service

ROOT = Path(__file__).resolve().parents[2]
TABLES = ("django_tasks_queuedmessage", "django_tasks_taskresult", "django_tasks_workerstate",
          "django_tasks_beatslot", "django_tasks_periodictask", "django_tasks_intervalschedule",
          "django_tasks_crontabschedule", "django_tasks_clockedschedule",
          "django_tasks_outboxmessage", "django_tasks_taskgroup", "django_tasks_ratebucket",
          "django_tasks_controlrequest", "django_tasks_controlreply")
POLL = 0.1

# Pinned so that neither the caller's environment nor a .env file changes what workers do.
BASE_ENV = {
    "PYTHONFAULTHANDLER": "1",  # a process that will not stop shows where it is (wait_exit)
    "TASKS_BROKER_URL": "django://",
    "TASKS_BROKER_TRANSPORT_OPTIONS": "{}",
    "TASKS_RESULT_BACKEND": "django://",
    "TASKS_ALWAYS_EAGER": "False",
    "TASKS_LOGLEVEL": "INFO",
    "TASKS_LEASE_SECONDS": "30",
    "TASKS_HEARTBEAT_SECONDS": "5",
    "TASKS_WORKER_SHUTDOWN_TIMEOUT": "25",
    "TASKS_MAX_DELIVERIES": "3",
    "DEMO_BEAT_SCHEDULE": "False",
    "PYTHONUNBUFFERED": "1",
}


class Worker:
    """One ``taskworker`` process; its output is in ``log``."""

    def __init__(self, proc: subprocess.Popen[bytes], log: Path, hostname: str) -> None:
        self.proc, self.log, self.hostname = proc, log, hostname

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def running(self) -> bool:
        return self.proc.poll() is None

    def wait_exit(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            # Where it is stuck: faulthandler (PYTHONFAULTHANDLER) writes every thread's
            # stack to its log on SIGABRT, even from inside a C call that holds it.
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGABRT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
            stacks = "\n".join(self.output().splitlines()[-60:])
            raise AssertionError(f"worker {self.hostname} still running after {timeout}s; "
                                 f"its stacks at SIGABRT, and its last lines:\n{stacks}"
                                 ) from None

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)


class Project:
    """A migrated database plus helpers to queue tasks, run workers and read tables."""

    def __init__(self, backend: str, url: str, tmp: Path) -> None:
        self.backend, self.url, self.tmp = backend, url, tmp
        self.workers: list[Worker] = []
        self.env = {**os.environ, **BASE_ENV, "DATABASE_URL": url}

    # -- subprocesses -----------------------------------------------------------------

    def manage(self, *args: str, timeout: float = 120) -> str:
        proc = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=self.env,
                              capture_output=True, text=True, timeout=timeout)
        if proc.returncode:
            raise AssertionError(f"manage.py {args[0]} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc.stdout

    def shell(self, code: str) -> str:
        """Run ``code`` in ``manage.py shell`` and return what it printed."""
        return self.manage("shell", "-v", "0", "-c", code)

    def delay(self, task: str, *args: Any, **kwargs: Any) -> str:
        """Queue ``testproject.demo.tasks.<task>(*args, **kwargs)``; return its id."""
        return self.shell(f"from testproject.demo.tasks import {task}\n"
                          f"print({task}.delay(*{args!r}, **{kwargs!r}).id)").strip()

    def worker(self, *args: str, hostname: str = "", **env: str) -> Worker:
        """Start ``taskworker`` with ``args`` (and extra environment variables)."""
        return self._start("taskworker", hostname or f"e2e-{len(self.workers)}", args, env)

    def beat(self, *args: str, hostname: str = "", **env: str) -> Worker:
        """Start ``taskbeat`` with ``args`` (and extra environment variables)."""
        return self._start("taskbeat", hostname or f"beat-{len(self.workers)}", args, env)

    def _start(self, command: str, hostname: str, args: tuple[str, ...],
               env: dict[str, str]) -> Worker:
        kind = "worker" if command == "taskworker" else "beat"
        log = self.tmp / f"{kind}-{len(self.workers)}-{hostname}.log"
        with log.open("wb") as out:  # the child keeps its own copy of the descriptor
            proc = subprocess.Popen(
                [sys.executable, "manage.py", command, "--hostname", hostname, *args],
                cwd=ROOT, env={**self.env, **env}, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        started = Worker(proc, log, hostname)
        self.workers.append(started)
        return started

    def wait_ready(self, worker: Worker, timeout: float = 30) -> None:
        """Wait until ``worker`` has written its first heartbeat (it is consuming)."""
        self.wait(f"worker {worker.hostname} to start", lambda: bool(self.query(
            "SELECT 1 FROM django_tasks_workerstate WHERE hostname = %s",
            (worker.hostname,))), timeout)

    # -- waiting and reading ----------------------------------------------------------

    def wait(self, what: str, check: Callable[[], bool], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if check():
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            time.sleep(POLL)

    def wait_state(self, task_id: str, state: str, timeout: float = 60) -> None:
        self.wait(f"task {task_id} to be {state}",
                  lambda: self.state(task_id) == state, timeout)

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        if self.backend == "sqlite":
            path = self.url.removeprefix("sqlite:///")
            with contextlib.closing(sqlite3.connect(path, timeout=30)) as conn, conn:
                return list(conn.execute(sql.replace("%s", "?"), params).fetchall())
        if self.backend == "mysql":
            with contextlib.closing(_mysql_connect(self.url)) as conn:
                cursor = conn.cursor()
                cursor.execute(sql, params)
                return list(cursor.fetchall()) if cursor.description else []
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            cursor = conn.execute(sql, params)  # type: ignore[arg-type]
            return list(cursor.fetchall()) if cursor.description else []

    def count(self, table: str, where: str = "1 = 1", params: tuple[Any, ...] = ()) -> int:
        return int(self.query(f"SELECT COUNT(*) FROM {table} WHERE {where}", params)[0][0])

    def state(self, task_id: str) -> str | None:
        row = self.result(task_id)
        return row["state"] if row else None

    def result(self, task_id: str) -> dict[str, Any] | None:
        rows = self.query("SELECT state, result, worker, attempts FROM "
                          "django_tasks_taskresult WHERE task_id = %s", (task_id,))
        if not rows:
            return None
        return dict(zip(("state", "result", "worker", "attempts"), rows[0], strict=True))

    def queued(self) -> list[tuple[Any, ...]]:
        return self.query("SELECT task_id, lease_owner, deliveries FROM "
                          "django_tasks_queuedmessage ORDER BY id")

    def timestamp(self, moment: dt.datetime) -> Any:
        """``moment`` as the backend stores a DateTimeField (naive UTC on SQLite and MySQL)."""
        if self.backend == "sqlite":
            return moment.astimezone(dt.UTC).replace(tzinfo=None).isoformat(" ")
        if self.backend == "mysql":
            return moment.astimezone(dt.UTC).replace(tzinfo=None)
        return moment


# -- processes ----------------------------------------------------------------------------


def _stat(pid: int | str) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name: state, ppid, pgrp, ..."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def alive(pid: int) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(entry.name)) and int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def group_members(pgid: int) -> list[int]:
    """Live processes of process group ``pgid`` (a worker and everything it started)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat(entry.name)
        if fields and int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            found.append(int(entry.name))
    return found


# -- fixtures -----------------------------------------------------------------------------


def _postgres_admin() -> Any:
    import psycopg

    return psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=10)


def _mysql_connect(url: str) -> Any:
    import MySQLdb

    parts = urlsplit(url)
    database = {"database": parts.path.lstrip("/")} if parts.path.strip("/") else {}
    return MySQLdb.connect(host=parts.hostname or "127.0.0.1", port=parts.port or 3306,
                           user=parts.username or "root", password=parts.password or "",
                           autocommit=True, connect_timeout=10, charset="utf8mb4", **database)


@contextlib.contextmanager
def _mysql_database() -> Iterator[str]:
    server = urlsplit(MYSQL_URL)
    require_service("MariaDB/MySQL", server.hostname or "127.0.0.1", server.port or 3306)
    require_module("MySQLdb", "the mysql extra (mysqlclient)")
    name = f"e2e_{uuid.uuid4().hex[:12]}"
    admin = server._replace(path="/").geturl()
    with contextlib.closing(_mysql_connect(admin)) as conn:
        conn.cursor().execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    try:
        yield server._replace(path=f"/{name}").geturl()
    finally:
        with contextlib.closing(_mysql_connect(admin)) as conn:
            conn.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")


@pytest.fixture(scope="module", params=["sqlite", "postgres", "mysql"])
def backend(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """A fresh, empty database for this module: ``(backend, DATABASE_URL)``."""
    if request.param == "sqlite":
        with tempfile.TemporaryDirectory(prefix="e2e-") as tmp:
            yield "sqlite", f"sqlite:///{tmp}/db.sqlite3"
        return
    if request.param == "mysql":
        with _mysql_database() as url:
            yield "mysql", url
        return
    server = urlsplit(POSTGRES_URL)
    require_service("PostgreSQL", server.hostname or "127.0.0.1", server.port or 5432)
    name = f"e2e_{uuid.uuid4().hex[:12]}"
    with _postgres_admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield "postgres", server._replace(path=f"/{name}").geturl()
    finally:
        with _postgres_admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def migrated(backend: tuple[str, str]) -> tuple[str, str]:
    with tempfile.TemporaryDirectory() as tmp:
        Project(*backend, Path(tmp)).manage("migrate", "-v", "0")
    return backend


@pytest.fixture
def project(migrated: tuple[str, str], tmp_path: Path) -> Iterator[Project]:
    proj = Project(*migrated, tmp_path)
    for table in TABLES:
        proj.query(f"DELETE FROM {table}")
    try:
        yield proj
    finally:
        for worker in proj.workers:
            worker.kill()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test marked ``databases("postgres")`` runs on those databases only: its subject (a
    pool resized, say) is the same on each, and the paths through each database are the
    other tests'. Its other variants are deselected, never skipped."""
    kept, dropped = [], []
    for item in items:
        marker = item.get_closest_marker("databases")
        params = getattr(getattr(item, "callspec", None), "params", {})
        if marker is not None and params.get("backend", marker.args[0]) not in marker.args:
            dropped.append(item)
        else:
            kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach every worker's output to the report of a failed test."""
    report = yield
    proj = getattr(item, "funcargs", {}).get("project")
    if report.failed and isinstance(proj, Project):
        for worker in proj.workers:
            report.sections.append((f"worker {worker.hostname} (pid {worker.pid}) output",
                                    worker.output()[-20_000:]))
    return report
