"""What the benchmark scripts share: starting and stopping processes, memory readings,
percentiles, and a fresh database per backend (a temporary SQLite file, or a new PostgreSQL
database dropped afterwards)."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

ROOT = Path(__file__).resolve().parents[1]
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test")


# -- processes ------------------------------------------------------------------------------

_started: list[subprocess.Popen[bytes]] = []


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run_code(python: str, code: str, env: dict[str, str], timeout: float = 300) -> Any:
    """Run ``code`` with ``python -c`` and return the JSON its last output line holds."""
    proc = subprocess.run([python, "-c", code], cwd=ROOT, env=env, text=True,
                          capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if proc.returncode:
        raise RuntimeError(f"subprocess failed ({proc.returncode}):\n{proc.stderr[-2500:]}")
    lines = proc.stdout.strip().splitlines()
    return json.loads(lines[-1]) if lines else None


def run_command(cmd: list[str], env: dict[str, str], timeout: float = 300) -> None:
    proc = subprocess.run(cmd, cwd=ROOT, env=env, text=True, capture_output=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd[1:4])} failed:\n{proc.stdout[-1500:]}"
                           f"\n{proc.stderr[-2500:]}")


def spawn(cmd: list[str], env: dict[str, str], logfile: Path) -> subprocess.Popen[bytes]:
    """Start a worker in its own process group, output to ``logfile``."""
    with open(logfile, "ab") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    _started.append(proc)
    return proc


def stop(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM the worker's process group, SIGKILL it after ``grace``; always reaps."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # whatever of the group is left
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)
    if proc in _started:
        _started.remove(proc)


def stop_all() -> None:
    for proc in list(_started):
        stop(proc, grace=3.0)


def tail(path: Path, size: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-size:]
    except OSError:
        return ""


@contextlib.contextmanager
def running(cmd: list[str], env: dict[str, str], logfile: Path) -> Iterator[Any]:
    proc = spawn(cmd, env, logfile)
    try:
        yield proc
    finally:
        stop(proc)


def memory_mib(pid: int) -> tuple[float, float, float]:
    """RSS, PSS and USS of a process and all its children, summed, in MiB."""
    import psutil

    main = psutil.Process(pid)
    procs = [main, *main.children(recursive=True)]
    rss = pss = uss = 0
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            info = proc.memory_full_info()
            rss += info.rss
            pss += getattr(info, "pss", 0)
            uss += getattr(info, "uss", 0)
    return rss / 2**20, pss / 2**20, uss / 2**20


def other_load() -> float | None:
    """System-wide CPU use over one second while the benchmark runs nothing: other load."""
    try:
        import psutil

        return float(psutil.cpu_percent(interval=1.0))
    except Exception:  # noqa: BLE001 - informational only
        return None


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


# -- databases ------------------------------------------------------------------------------


class Database:
    """A fresh database for one backend; ``drop()`` removes it."""

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.tmp = Path(tempfile.mkdtemp(prefix=f"bench-{backend}-"))
        self.name = f"bench_{uuid.uuid4().hex[:10]}"
        self._poll: Any = None
        self.created = False
        if backend == "sqlite":
            self.path = self.tmp / "bench.sqlite3"
            self.url = f"sqlite:///{self.path}"
        elif backend == "postgres":
            self._admin(f'CREATE DATABASE "{self.name}"')
            self.created = True
            self.url = POSTGRES_URL.rsplit("/", 1)[0] + f"/{self.name}"
        else:
            raise ValueError(f"unknown backend {backend!r}")

    @staticmethod
    def _admin(sql: str) -> None:
        import psycopg

        with psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql)  # type: ignore[arg-type]

    def _connect(self) -> Any:
        if self.backend == "sqlite":
            return sqlite3.connect(self.path, timeout=30, isolation_level=None)
        import psycopg

        return psycopg.connect(self.url, autocommit=True, connect_timeout=10)

    def execute(self, *statements: str) -> None:
        conn = self._connect()
        try:
            for sql in statements:
                conn.execute(sql)
        finally:
            conn.close()

    def count(self, sql: str) -> int:
        """Run a COUNT on a connection kept open for polling."""
        if self._poll is None:
            self._poll = self._connect()
        row = self._poll.execute(sql).fetchone()
        return int(row[0])

    def vacuum(self, tables: list[str]) -> None:
        if self.backend == "postgres":
            self.execute(*(f'VACUUM ANALYZE "{t}"' for t in tables))
        else:
            self.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def django_database(self) -> dict[str, Any]:
        """This database as a Django ``DATABASES`` entry (for the Celery side)."""
        if self.backend == "sqlite":
            return {"ENGINE": "django.db.backends.sqlite3", "NAME": str(self.path),
                    "OPTIONS": {"timeout": 30, "transaction_mode": "IMMEDIATE",
                                "init_command": "PRAGMA journal_mode=WAL; "
                                                "PRAGMA synchronous=NORMAL;"}}
        parts = urlsplit(self.url)
        return {"ENGINE": "django.db.backends.postgresql", "NAME": self.name,
                "USER": unquote(parts.username or ""), "PASSWORD": unquote(parts.password or ""),
                "HOST": parts.hostname or "", "PORT": str(parts.port or "")}

    def drop(self) -> None:
        if self._poll is not None:
            with contextlib.suppress(Exception):
                self._poll.close()
            self._poll = None
        if self.created:
            try:
                self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
                self.created = False
            except Exception as exc:  # noqa: BLE001 - report, never fail the run
                log(f"could not drop database {self.name}: {exc}")
        import shutil

        shutil.rmtree(self.tmp, ignore_errors=True)


