"""Benchmarks of django_tasks on the database broker, side by side with Celery.

    python benchmarks/run.py                      # SQLite and PostgreSQL, full size (~5 min)
    python benchmarks/run.py --quick              # small numbers, a smoke run; prints only
    python benchmarks/run.py --backends postgres  # one database only
    python benchmarks/run.py --no-celery          # django_tasks only

For each database (a temporary SQLite file; a new PostgreSQL database ``bench_<random>``,
dropped at the end) after ``manage.py migrate``, it measures django_tasks (``django://``
broker, results in the same database) and Celery (Redis broker db 15, django-celery-results
in the same database; run from a separate virtualenv, .venv/bench-celery, created on first use):

1. enqueue rate: ``noop.delay()`` one by one;
2. drain rate of queued no-op tasks at concurrency 1 and 2 with results stored;
3. round-trip latency of ``add.delay(i, i).get()`` on a warm worker (-c 2);
4. worker memory (main process + pool processes) idle after the drain.

Prints a Markdown table and writes docs/benchmarks.md. Needs psutil and psycopg in the
running interpreter, a PostgreSQL server for ``postgres`` and a Redis server for Celery.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import datetime as dt
import json
import os
import platform
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: the benchmarks package is importable

from benchmarks.common import (  # noqa: E402 - after the path is set
    POSTGRES_URL,
    Database,
    log,
    memory_mib,
    other_load,
    percentile,
    run_code,
    run_command,
    running,
    stop_all,
    tail,
)

BENCH_VENV = Path(os.environ.get("BENCH_VENV", ROOT / ".venv" / "bench-celery"))
CELERY_PACKAGES = ["celery", "django-celery-results", "redis", "django", "psycopg[binary]",
                   "packaging"]  # kombu's Redis transport imports packaging
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
POLL = 0.05  # seconds between result counts during a drain
TARGET_PG_C2 = 5000  # tasks/s: django_tasks on PostgreSQL, -c 2, results stored

SIZES = {
    "full": {"enqueue": 5000, "drain": 20000, "celery_drain": 4000, "warm": 50, "calls": 500,
             "celery_default_calls": 40, "startup_repeats": 3, "drain_cap": 180.0,
             "celery_drain_cap": 90.0},
    "quick": {"enqueue": 300, "drain": 1000, "celery_drain": 300, "warm": 5, "calls": 50,
              "celery_default_calls": 8, "startup_repeats": 1, "drain_cap": 60.0,
              "celery_drain_cap": 30.0},
}

# -- code run in subprocesses (after django.setup(), with the backend's environment) ------

OURS_ENQUEUE = """
import json, time, django; django.setup()
from testproject.demo.tasks import noop
n = {n}
start = time.perf_counter()
for _ in range(n):
    noop.delay()
print(json.dumps(n / (time.perf_counter() - start)))
"""
# Setup only: PENDING rows and queue rows in batches of 1,000 per transaction, through the
# broker's and store's bulk calls where they exist, else delay() calls inside a transaction.
OURS_FILL = """
import django; django.setup()
from django.db import transaction
from testproject.demo.tasks import noop
n = {n}
try:
    from django_tasks.conf import get_broker, get_result_store
    from django_tasks.task import build_message
    broker, store = get_broker(), get_result_store()

    def batch(k):
        messages = [build_message(noop.name, (), {{}}, queue=noop.queue) for _ in range(k)]
        with transaction.atomic():
            if store is not None:
                store.create_pending(messages)
            broker.publish(messages)
except Exception:
    def batch(k):
        with transaction.atomic():
            for _ in range(k):
                noop.delay()
for start in range(0, n, 1000):
    batch(min(1000, n - start))
"""
OURS_LATENCY = """
import json, time, django; django.setup()
from testproject.demo.tasks import add
kw = {kw}
for i in range({warm}):
    add.delay(i, i).get(timeout=30, **kw)
samples = []
for i in range({n}):
    start = time.perf_counter()
    assert add.delay(i, i).get(timeout=30, **kw) == 2 * i
    samples.append((time.perf_counter() - start) * 1000)
print(json.dumps(samples))
"""
CELERY_ENQUEUE = """
import json, time, django; django.setup()
from benchmarks.celery_app.tasks import noop
n = {n}
start = time.perf_counter()
for _ in range(n):
    noop.delay()
print(json.dumps(n / (time.perf_counter() - start)))
"""
CELERY_FILL = """
import django; django.setup()
from benchmarks.celery_app.tasks import noop
for _ in range({n}):
    noop.delay()
"""
CELERY_LATENCY = OURS_LATENCY.replace("testproject.demo.tasks", "benchmarks.celery_app.tasks")
VERSIONS = "import django, json; print(json.dumps({'django': django.get_version()}))"
CELERY_VERSIONS = ("import celery, django, json; print(json.dumps("
                   "{'celery': celery.__version__, 'django': django.get_version()}))")


# -- the two frameworks ---------------------------------------------------------------------


class Framework:
    name = ""
    python = sys.executable
    success_sql = ""
    tables: list[str] = []
    enqueue_code = latency_code = fill_code = ""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.logfile = db.tmp / f"{self.name}-worker.log"

    def env(self) -> dict[str, str]:
        raise NotImplementedError

    def migrate(self) -> None:
        raise NotImplementedError

    def worker_cmd(self, concurrency: int) -> list[str]:
        raise NotImplementedError

    def reset(self) -> None:
        raise NotImplementedError

    def done(self) -> int:
        return self.db.count(self.success_sql)

    def fill(self, n: int) -> None:
        run_code(self.python, self.fill_code.format(n=n), self.env(), timeout=300)


class Ours(Framework):
    name = "django_tasks"
    success_sql = "SELECT COUNT(*) FROM django_tasks_taskresult WHERE state = 'SUCCESS'"
    tables = ["django_tasks_queuedmessage", "django_tasks_taskresult"]
    enqueue_code, fill_code, latency_code = OURS_ENQUEUE, OURS_FILL, OURS_LATENCY

    def env(self) -> dict[str, str]:
        return {**os.environ, "DATABASE_URL": self.db.url, "TASKS_LOGLEVEL": "WARNING",
                "TASKS_BROKER_URL": "django://", "TASKS_RESULT_BACKEND": "django://",
                "TASKS_ALWAYS_EAGER": "False", "DEBUG": "False",  # no query log
                "DJANGO_SETTINGS_MODULE": "testproject.settings",
                "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}

    def migrate(self) -> None:
        run_command([self.python, "manage.py", "migrate", "-v0"], self.env())

    def worker_cmd(self, concurrency: int) -> list[str]:
        return [self.python, "manage.py", "taskworker", "-c", str(concurrency), "-P", "prefork",
                "-l", "warning"]

    def reset(self) -> None:
        self.db.execute("DELETE FROM django_tasks_queuedmessage",
                        "DELETE FROM django_tasks_taskresult",
                        "DELETE FROM django_tasks_workerstate")


class Celery(Framework):
    name = "celery"
    python = str(BENCH_VENV / "bin" / "python")
    success_sql = "SELECT COUNT(*) FROM django_celery_results_taskresult WHERE status = 'SUCCESS'"
    tables = ["django_celery_results_taskresult"]
    enqueue_code, fill_code, latency_code = CELERY_ENQUEUE, CELERY_FILL, CELERY_LATENCY

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if k not in ("DJANGO_SETTINGS_MODULE", "VIRTUAL_ENV", "PYTHONHOME")}
        return {**env, "DJANGO_SETTINGS_MODULE": "benchmarks.celery_app.settings",
                "CELERY_BENCH_DATABASE": json.dumps(self.db.django_database()),
                "CELERY_BENCH_BROKER": REDIS_URL, "PYTHONPATH": str(ROOT),
                "PYTHONUNBUFFERED": "1"}

    def migrate(self) -> None:
        run_command([self.python, "-m", "django", "migrate", "-v0"], self.env())

    def worker_cmd(self, concurrency: int) -> list[str]:
        return [self.python, "-m", "celery", "-A", "benchmarks.celery_app", "worker",
                "-P", "prefork", "-c", str(concurrency), "--loglevel=warning"]

    def reset(self) -> None:
        flush_redis()
        self.db.execute("DELETE FROM django_celery_results_taskresult")


def flush_redis() -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_timeout=10)
    try:
        client.flushdb()
    finally:
        client.close()


def celery_ready(install: bool = True) -> str | None:
    """None when .venv/bench-celery runs Celery (creating it if missing), else why not."""
    python = BENCH_VENV / "bin" / "python"
    check = ("import celery, django_celery_results, redis, django, psycopg, "
             "kombu.transport.redis")
    try:
        flush_redis()
    except Exception as exc:  # noqa: BLE001 - no Redis: no Celery column
        return f"Redis at {REDIS_URL} not reachable ({type(exc).__name__})"
    try:
        if not python.exists():
            if not install:
                return f"{BENCH_VENV} missing"
            log(f"creating {BENCH_VENV} for Celery")
            subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True,
                           timeout=300, capture_output=True)
        if subprocess.run([str(python), "-c", check], capture_output=True,
                          timeout=60).returncode:
            if not install:
                return "Celery packages missing"
            log(f"installing {' '.join(CELERY_PACKAGES)} into {BENCH_VENV}")
            subprocess.run([str(python), "-m", "pip", "install", "-q", *CELERY_PACKAGES],
                           check=True, timeout=900, capture_output=True)
            subprocess.run([str(python), "-c", check], check=True, timeout=60,
                           capture_output=True)
    except Exception as exc:  # noqa: BLE001 - no venv: no Celery column
        return f"could not set up {BENCH_VENV} ({type(exc).__name__})"
    return None


# -- measurements ---------------------------------------------------------------------------


@dataclass
class Cell:
    value: float | tuple[float, ...] | None = None
    note: str = ""
    error: str = ""


@dataclass
class Drain:
    tasks: int
    done: int = 0
    elapsed: float = 0.0  # spawn → all SUCCESS
    startup: float = 0.0
    first_at: float | None = None
    first_count: int = 0
    partial: bool = False

    @property
    def rate(self) -> float:
        """From spawn minus the start-up time measured separately."""
        return self.done / max(1e-6, self.elapsed - self.startup)

    @property
    def rate_from_first(self) -> float | None:
        if self.first_at is None or self.elapsed <= self.first_at:
            return None
        return (self.done - self.first_count) / (self.elapsed - self.first_at)


def wait_for(fw: Framework, worker: subprocess.Popen[bytes], n: int, cap: float,
             poll: float, started: float, drain: Drain | None = None) -> tuple[int, float]:
    """Poll the SUCCESS count until it reaches ``n`` or ``cap`` seconds pass."""
    deadline = started + cap
    while True:
        time.sleep(poll)
        done = fw.done()
        now = time.monotonic() - started
        if drain is not None and done and drain.first_at is None:
            drain.first_at, drain.first_count = now, done
        if done >= n:
            return done, now
        if worker.poll() is not None:
            raise RuntimeError(f"{fw.name} worker exited with {worker.returncode}:\n"
                               f"{tail(fw.logfile)}")
        if time.monotonic() > deadline:
            return done, now


def startup_time(fw: Framework, concurrency: int, repeats: int) -> float:
    """Median time from spawning a worker to the result of one task queued beforehand."""
    samples = []
    for _ in range(repeats):
        fw.reset()
        fw.fill(1)
        started = time.monotonic()
        with running(fw.worker_cmd(concurrency), fw.env(), fw.logfile) as worker:
            done, took = wait_for(fw, worker, 1, 60.0, 0.01, started)
        if not done:
            raise RuntimeError(f"{fw.name} worker ran no task in 60 s:\n{tail(fw.logfile)}")
        samples.append(took)
    return statistics.median(samples)


def measure(fw: Framework, size: dict[str, Any], celery: bool) -> tuple[dict[str, Cell],
                                                                        list[str]]:
    """All measurements of one framework on one database; errors become cells."""
    cells: dict[str, Cell] = {}
    details: list[str] = []
    label = f"{fw.name} on {fw.db.backend}"

    def attempt(keys: list[str], what: str, fn: Callable[[], None]) -> None:
        log(f"{label}: {what}")
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - one failed row, not a failed run
            message = str(exc).strip().splitlines()
            short = f"{type(exc).__name__}: {message[-1] if message else ''}"[:120]
            log(f"{label}: {what} failed: {exc}")
            if os.environ.get("BENCH_DEBUG"):
                traceback.print_exc()
            for key in keys:
                cells.setdefault(key, Cell(error=short))
            details.append(f"{label}, {what}: failed ({short})")

    def enqueue() -> None:
        fw.reset()
        rate = run_code(fw.python, fw.enqueue_code.format(n=size["enqueue"]), fw.env())
        cells["enqueue"] = Cell(float(rate))

    busy = other_load()
    if busy is not None:
        details.append(f"{label}: the machine was {busy:.0f}% busy (all CPUs) in the second "
                       "before these measurements, with no benchmark process running")
    attempt(["enqueue"], "enqueue", enqueue)
    drain_n = size["celery_drain"] if celery else size["drain"]
    cap = size["celery_drain_cap"] if celery else size["drain_cap"]
    def drain_and_more(concurrency: int) -> None:
        startup = startup_time(fw, concurrency, size["startup_repeats"])
        cells[f"startup{concurrency}"] = Cell(startup)
        fw.reset()
        fw.fill(drain_n)
        fw.db.vacuum(fw.tables)
        result = Drain(drain_n, startup=startup)
        started = time.monotonic()
        with running(fw.worker_cmd(concurrency), fw.env(), fw.logfile) as worker:
            result.done, result.elapsed = wait_for(fw, worker, drain_n, cap, POLL, started,
                                                   result)
            result.partial = result.done < drain_n
            note = ""
            if result.partial:
                note = f"({result.done:,} of {drain_n:,} done in {cap:.0f} s)"
            elif drain_n != size["drain"]:
                note = f"({drain_n:,} tasks)"
            cells[f"drain{concurrency}"] = Cell(result.rate, note)
            first = result.rate_from_first
            details.append(
                f"{label}, drain -c {concurrency}: {result.done:,} of {drain_n:,} tasks "
                f"SUCCESS {result.elapsed:.2f} s after spawn; start-up {startup:.2f} s; "
                f"{result.rate:,.0f} tasks/s from spawn minus start-up"
                + (f", {first:,.0f} tasks/s from the first SUCCESS seen "
                   f"({result.first_at:.2f} s)" if first is not None else ""))
            time.sleep(2.0)  # idle after the drain
            cells[f"memory{concurrency}"] = Cell(memory_mib(worker.pid))
            if concurrency == 2:
                latency(worker)

    def latency(worker: subprocess.Popen[bytes]) -> None:
        for key, kw, calls, warm in (
            ("latency", {}, size["celery_default_calls"] if celery else size["calls"],
             5 if celery else size["warm"]),
            ("latency_fast", {"interval": 0.005}, size["calls"], size["warm"]),
        ):
            if celery and size["quick"]:
                warm = min(warm, 2)
            log(f"{label}: round trips {kw or 'get()'}: {warm} warm-up + {calls} calls")
            try:
                code = fw.latency_code.format(warm=warm, n=calls, kw=repr(kw))
                samples = run_code(fw.python, code, fw.env(), timeout=240)
                values = tuple(percentile(samples, q) for q in (0.50, 0.95, 0.99))
                note = f"({calls} calls)" if calls != size["calls"] else ""
                cells[key] = Cell(values, note)
            except Exception as exc:  # noqa: BLE001 - one failed row
                cells[key] = Cell(error=f"{type(exc).__name__}"[:120])
                log(f"{label}: round trips failed: {exc}")
            if worker.poll() is not None:
                raise RuntimeError(f"worker died:\n{tail(fw.logfile)}")

    for concurrency in (1, 2):
        keys = [f"startup{concurrency}", f"drain{concurrency}", f"memory{concurrency}"]
        if concurrency == 2:
            keys += ["latency", "latency_fast"]
        attempt(keys, f"drain -c {concurrency}",
                lambda c=concurrency: drain_and_more(c))  # type: ignore[misc]
    with contextlib.suppress(Exception):
        fw.reset()
    return cells, details


def bench_backend(backend: str, size: dict[str, Any], celery_problem: str | None
                  ) -> tuple[dict[str, dict[str, Cell]], list[str]]:
    results: dict[str, dict[str, Cell]] = {}
    details: list[str] = []
    try:
        db = Database(backend)
    except Exception as exc:  # noqa: BLE001 - no database: its columns say so
        log(f"{backend}: cannot create a database: {exc}")
        problem = f"{backend} unavailable ({type(exc).__name__})"
        return {"ours": {"_all": Cell(error=problem)},
                "celery": {"_all": Cell(error=problem)}}, [problem]
    try:
        ours = Ours(db)
        log(f"{backend}: migrate ({db.url})")
        ours.migrate()
        results["ours"], more = measure(ours, size, celery=False)
        details += more
        if celery_problem:
            results["celery"] = {"_all": Cell(error=f"unavailable: {celery_problem}")}
        else:
            other = Celery(db)
            try:
                other.migrate()
                results["celery"], more = measure(other, size, celery=True)
                details += more
            except Exception as exc:  # noqa: BLE001 - Celery is optional
                log(f"celery on {backend}: {exc}")
                results["celery"] = {"_all": Cell(error=f"unavailable: {type(exc).__name__}")}
            finally:
                with contextlib.suppress(Exception):
                    flush_redis()
    except Exception as exc:  # noqa: BLE001 - report, go on  # noqa: BLE001 - no Redis: no Celery column
        log(f"{backend}: {exc}")
        results.setdefault("ours", {"_all": Cell(error=f"failed: {type(exc).__name__}")})
        results.setdefault("celery", {"_all": Cell(error=f"failed: {type(exc).__name__}")})
    finally:
        stop_all()
        db.drop()
    return results, details


# -- report ---------------------------------------------------------------------------------


@dataclass
class Row:
    key: str
    label: str
    digits: int = 0


def rows(size: dict[str, Any]) -> list[Row]:
    return [
        Row("enqueue", f"enqueue: `noop.delay()` one by one, {size['enqueue']:,} calls "
            "(tasks/s, higher is better)"),
        Row("drain1", f"drain {size['drain']:,} queued no-op tasks, -c 1, results stored "
            "(tasks/s from spawn minus start-up, higher is better)"),
        Row("drain2", f"drain {size['drain']:,} queued no-op tasks, -c 2, results stored "
            "(tasks/s from spawn minus start-up, higher is better)"),
        Row("startup1", "worker start-up, -c 1: spawn to first result (s, lower is better)",
            2),
        Row("startup2", "worker start-up, -c 2: spawn to first result (s, lower is better)",
            2),
        Row("latency", "round trip `add.delay(i, i).get()`, -c 2, warm: p50 / p95 / p99 "
            "(ms, lower is better)", 1),
        Row("latency_fast", "round trip `add.delay(i, i).get(interval=0.005)`, -c 2, warm: "
            "p50 / p95 / p99 (ms, lower is better)", 1),
        Row("memory1", "worker memory idle after the drain, -c 1, main + pool processes: "
            "RSS / PSS / USS (MiB, lower is better)", 0),
        Row("memory2", "worker memory idle after the drain, -c 2, main + pool processes: "
            "RSS / PSS / USS (MiB, lower is better)", 0),
    ]


def fmt(value: float, digits: int) -> str:
    return f"{value:,.{digits}f}"


def cell_text(cells: dict[str, Cell], row: Row) -> str:
    if "_all" in cells:
        return cells["_all"].error
    cell = cells.get(row.key)
    if cell is None:
        return "-"
    if cell.value is None:
        return f"error: {cell.error}" if cell.error else "-"
    values = cell.value if isinstance(cell.value, tuple) else (cell.value,)
    text = " / ".join(fmt(v, row.digits) for v in values)
    return f"{text} {cell.note}".strip()


def ratio_text(ours: dict[str, Cell], celery: dict[str, Cell], row: Row) -> str:
    a, b = ours.get(row.key), celery.get(row.key)
    if a is None or b is None or a.value is None or b.value is None:
        return "-"
    va = a.value if isinstance(a.value, tuple) else (a.value,)
    vb = b.value if isinstance(b.value, tuple) else (b.value,)
    return " / ".join(f"{x / y:.2f}" if y else "-" for x, y in zip(va, vb, strict=False))


def table(results: dict[str, dict[str, dict[str, Cell]]], size: dict[str, Any]) -> str:
    names = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
    header = ["measurement"]
    for backend in results:
        name = names.get(backend, backend)
        header += [f"{name} django_tasks", f"{name} Celery", "ratio"]
    lines = ["| " + " | ".join(header) + " |", "|---" + "|---:" * (len(header) - 1) + "|"]
    for row in rows(size):
        line = [row.label]
        for per in results.values():
            ours, celery = per.get("ours", {}), per.get("celery", {})
            line += [cell_text(ours, row), cell_text(celery, row),
                     ratio_text(ours, celery, row)]
        lines.append("| " + " | ".join(line) + " |")
    return "\n".join(lines)


def machine(celery_versions: dict[str, str] | None) -> str:
    import django

    pg = redis_version = "-"
    with contextlib.suppress(Exception):
        import psycopg

        with psycopg.connect(POSTGRES_URL, connect_timeout=5) as conn:
            pg = str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
    with contextlib.suppress(Exception):
        import redis

        redis_version = str(redis.Redis.from_url(REDIS_URL, socket_timeout=5)
                            .info("server")["redis_version"])
    cpu = platform.processor() or "-"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    import psutil

    ram = psutil.virtual_memory().total / 2**30
    parts = [f"{os.cpu_count()} CPUs ({cpu})", f"{ram:.0f} GiB RAM",
             f"Python {platform.python_version()}", f"Django {django.get_version()}",
             f"PostgreSQL {pg}", f"SQLite {sqlite3.sqlite_version}", f"Redis {redis_version}"]
    if celery_versions:
        parts.append(f"Celery {celery_versions.get('celery')} with django-celery-results "
                     f"(Django {celery_versions.get('django')})")
    parts.append(dt.datetime.now().strftime("%Y-%m-%d %H:%M"))
    return ", ".join(parts)


DOC = """# Benchmarks

django_tasks on its database broker (`django://`, results stored in the same database), side
by side with Celery (Redis broker, results stored with django-celery-results in the same
database), measured on one machine in one run by `python benchmarks/run.py` ({mode} run).

{table}

**ratio** is django_tasks ÷ Celery, per number: above 1 is better for rates, below 1 is
better for times and memory. A Celery cell marked "(N tasks)" or "(N calls)" was measured on
fewer tasks or calls than django_tasks, to keep the run short; rates and percentiles are still
comparable.

{target}

Machine: {machine}.

## What each number means

- **enqueue**: `noop.delay()` called {enqueue:,} times one after another from one process
  (timed after `django.setup()`). For django_tasks each call is its own transaction that
  writes a PENDING result row and a queue row; for Celery it is one Redis `LPUSH` (Celery
  writes no result row at enqueue).
- **drain**: {drain:,} `noop` tasks are queued first (setup, not timed: batches of 1,000 per
  transaction for django_tasks, `delay()` calls for Celery), then one worker is spawned
  (`manage.py taskworker -c N -P prefork -l warning`, or
  `celery worker -P prefork -c N --loglevel=warning`). The number of SUCCESS result rows is
  polled every {poll} s; the rate is the task count divided by (time from spawn until all
  rows are SUCCESS minus the worker's start-up time). Every task's result row is written before
  its message is acked (django_tasks), or by the worker on completion (Celery).
- **start-up**: the median over {repeats} runs of the time from spawning the worker until the
  result of a single task, queued beforehand, is stored: process start, Django set-up and
  the first fetch. It is subtracted from the drain time above.
- **round trip**: on the worker left warm by the -c 2 drain, `add.delay(i, i).get()` one
  call after another ({warm} warm-up calls, then {calls} timed ones); the time from `delay()`
  until `get()` returns. The first row uses `get()`'s defaults: django_tasks polls from 2 ms
  backing off to 0.5 s, Celery's database result backend polls every 0.5 s (so Celery's
  default row is timed on {celery_calls} calls after 5 warm-up ones: each takes half a
  second). The second row polls every 5 ms on both sides.
- **memory**: RSS, PSS and USS (psutil) of the worker's main process and its pool
  processes, summed, idle 2 s after the drain. RSS counts shared pages once per process; PSS
  shares them out; USS is what the processes use alone.

Configuration: SQLite in WAL mode with `synchronous=NORMAL` and `BEGIN IMMEDIATE`
(testproject's settings; the Celery side uses the same); PostgreSQL over TCP on localhost.
`DEBUG=False` on both sides (Django keeps no query log). Celery runs with its defaults
(prefetch multiplier 4, early ack, no extended results) except one: its Django fix-up closes
the database connection before and after every task, which makes each stored result pay for
a new connection; `CELERY_DB_REUSE_MAX=1000` with `CONN_MAX_AGE=None` keeps connections open
instead, as django_tasks' worker does, so the comparison measures the task machinery and not
connection set-up (with Celery's default, its PostgreSQL drain measured 2 to 3 times slower
still here: 161 and 176 tasks/s at -c 1 and -c 2). Celery's app lives in
`benchmarks/celery_app/` and runs from a separate virtualenv ({venv}) that shares nothing
with django_tasks.

The machine's cores are shared by the database, the worker and the producer or poller:
compare figures from the same run, not across runs or machines.

## Raw numbers

{details}

## How to run

```
python benchmarks/run.py                      # SQLite and PostgreSQL, full size
python benchmarks/run.py --quick              # a smoke run, printed only
python benchmarks/run.py --backends postgres  # one database only
python benchmarks/run.py --no-celery          # without the Celery columns
```

It needs `psutil` and `psycopg` where it runs, PostgreSQL at `TEST_POSTGRES_URL`
(default `postgres://postgres@127.0.0.1:5432/test`; the script creates and drops a database
`bench_<random>`) and, for the Celery columns, Redis at `BENCH_REDIS_URL` (default
`redis://127.0.0.1:6379/15`, flushed before and after) and the virtualenv `BENCH_VENV`
(default `.venv/bench-celery`), created when missing with
`pip install {packages}`. When any of these is missing, its columns say
"unavailable" and the rest of the run goes on. A full run takes about five minutes on two
cores.
"""


def target_text(results: dict[str, dict[str, dict[str, Cell]]]) -> str:
    cell = results.get("postgres", {}).get("ours", {}).get("drain2")
    if cell is None or not isinstance(cell.value, float):
        return (f"Target: django_tasks on PostgreSQL at -c 2 drains at least "
                f"{TARGET_PG_C2:,} tasks/s with results stored (not measured in this run).")
    verdict = "met" if cell.value >= TARGET_PG_C2 else "**not met**"
    return (f"Target: django_tasks on PostgreSQL at -c 2 drains at least {TARGET_PG_C2:,} "
            f"tasks/s with results stored: measured {cell.value:,.0f} tasks/s, {verdict}.")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,postgres",
                        help="comma-separated: sqlite, postgres (default: both)")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes, a smoke run (writes a report only with --output)")
    parser.add_argument("--no-celery", action="store_true", help="skip the Celery columns")
    parser.add_argument("--output", default=None,
                        help="where to write the report (default: docs/benchmarks.md for a "
                             "full run, nowhere for --quick)")
    options = parser.parse_args()
    backends = [b.strip() for b in options.backends.split(",") if b.strip()]
    unknown = set(backends) - {"sqlite", "postgres"}
    if unknown:
        parser.error(f"unknown backends: {', '.join(sorted(unknown))}")
    mode = "quick" if options.quick else "full"
    size = {**SIZES[mode], "quick": options.quick}

    began = time.monotonic()
    celery_problem = "skipped (--no-celery)" if options.no_celery else celery_ready()
    if celery_problem:
        log(f"Celery columns: {celery_problem}")
    celery_versions = None
    if not celery_problem:
        with contextlib.suppress(Exception):
            celery_versions = run_code(Celery.python, CELERY_VERSIONS, dict(os.environ))
    results: dict[str, dict[str, dict[str, Cell]]] = {}
    details: list[str] = []
    for backend in backends:
        results[backend], more = bench_backend(backend, size, celery_problem)
        details += more
    text = table(results, size)
    info = machine(celery_versions)
    took = time.monotonic() - began
    details.append(f"whole run: {took:.0f} s")
    print(text)
    print()
    print(target_text(results))
    print(f"Machine: {info}.")
    print(f"({mode} run, {took:.0f} s)")
    doc = DOC.format(
        mode=mode, table=text, target=target_text(results), machine=info,
        enqueue=size["enqueue"], drain=size["drain"], poll=POLL,
        repeats=size["startup_repeats"], warm=size["warm"], calls=size["calls"],
        celery_calls=size["celery_default_calls"], venv=BENCH_VENV,
        packages=" ".join(f"'{p}'" if "[" in p else p for p in CELERY_PACKAGES),
        details="\n".join(f"- {d}" for d in details))
    output = options.output or (None if options.quick else ROOT / "docs" / "benchmarks.md")
    if output:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(doc)
        log(f"wrote {output}")
    return 0


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


if __name__ == "__main__":
    atexit.register(stop_all)
    signal.signal(signal.SIGTERM, _terminate)
    sys.exit(main())
