"""Benchmarks of django_tasks side by side with Celery, in one run.

    python benchmarks/run.py                        # everything, full size (~30 min)
    python benchmarks/run.py --quick                # small numbers, a smoke run; prints only
    python benchmarks/run.py --brokers redis        # only the Redis table (or amqp)
    python benchmarks/run.py --backends postgres    # the database broker on PostgreSQL only
    python benchmarks/run.py --no-celery            # django_tasks only

Three tables:

- ``database``: django_tasks on its database broker (``django://``), on SQLite and on
  PostgreSQL (a temporary file; a new database ``bench_<random>``, dropped at the end),
  results in the same database, beside Celery on Redis with django-celery-results in that
  database;
- ``redis``: django_tasks on Redis (db 15 of ``BENCH_REDIS_URL``, flushed before and after
  every measurement) beside Celery on the same Redis, with results in PostgreSQL and without;
- ``amqp``: django_tasks on RabbitMQ (``BENCH_AMQP_URL``; the benchmark's queues deleted
  before and after every measurement, ``rabbitmq.py``) beside Celery on the same RabbitMQ,
  with results in PostgreSQL and without.

Measurements (``measure.py``): enqueue one by one and in bulk, drain at -c 1 and -c 2,
start-up, round trips on a warm worker, worker memory after the drain and with countdown
tasks pending. Prints the tables and writes docs/benchmarks.md (``report.py``, ``page.md``).
Needs psutil, psycopg, redis and kombu in the running interpreter; Celery runs from ``BENCH_VENV``
(``frameworks.py``), created on first use.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import re
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: the benchmarks package is importable

from benchmarks import floor, rabbitmq, report  # noqa: E402 - after the path is set
from benchmarks.common import Database, log, run_code, stop_all  # noqa: E402
from benchmarks.frameworks import (  # noqa: E402
    Celery,
    Framework,
    Ours,
    celery_ready,
    flush_redis,
    redis_problem,
)
from benchmarks.measure import Cell, Measurement, Plan, side_by_side  # noqa: E402
from benchmarks.snippets import CELERY_VERSIONS  # noqa: E402

SIZES = {
    "full": {"enqueue": 5000, "bulk": 20000, "drain": 20000, "celery_drain": 4000,
             "countdown": 10000, "warm": 50, "calls": 500, "celery_default_calls": 40,
             "startup_repeats": 3, "drain_repeats": 3, "drain_cap": 180.0,
             "celery_drain_cap": 90.0, "depths": (1000, 20000, 200000)},
    "quick": {"enqueue": 300, "bulk": 1000, "drain": 1000, "celery_drain": 300,
              "countdown": 500, "warm": 5, "calls": 50, "celery_default_calls": 8,
              "startup_repeats": 1, "drain_repeats": 1, "drain_cap": 60.0,
              "celery_drain_cap": 30.0, "depths": (100, 1000, 5000)},
}
NAMES = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
BROKERS = ("database", "redis", "amqp")
WITH_RESULTS = "Redis, results in PostgreSQL"
NO_RESULTS = "Redis, no results"
AMQP_WITH_RESULTS = "RabbitMQ, results in PostgreSQL"
AMQP_NO_RESULTS = "RabbitMQ, no results"
#: Per broker table: the column groups' titles, the broker's name in the log, whether it
#: answers, and how its state is wiped before and after every measurement.
TABLES: dict[str, tuple[str, str, str, Callable[[], str | None], Callable[[], None]]] = {
    "redis": (WITH_RESULTS, NO_RESULTS, "redis", redis_problem, flush_redis),
    "amqp": (AMQP_WITH_RESULTS, AMQP_NO_RESULTS, "rabbitmq", rabbitmq.problem, rabbitmq.clean),
}
# The hand-written reading of the figures in docs/benchmarks.md survives a new run.
READING = re.compile(r"<!-- reading -->.*?<!-- /reading -->", re.S)


def sides(ours: Framework, plan: Plan, db: Database, size: dict[str, Any],
          problem: str | None, where: str, details: list[str], *, results: bool = True,
          broker: str = "redis") -> dict[str, dict[str, Cell]]:
    """django_tasks and Celery measured in turns, row by row (``side_by_side``); Celery's
    columns say why when it cannot run (``problem``, or its set-up failed)."""
    first = Measurement(ours, size, f"django_tasks on {where}", plan)
    second, unavailable = None, {"_all": Cell(error=f"unavailable: {problem}")}
    if not problem:
        try:
            other = Celery(db, broker=broker, results=results)
            other.migrate()
            second = Measurement(other, size, f"celery on {where}", Plan())
        except Exception as exc:  # noqa: BLE001 - Celery is optional
            log(f"celery on {where}: {exc}")
            unavailable = {"_all": Cell(error=f"unavailable: {type(exc).__name__}")}
    try:
        side_by_side(first, second)
    finally:
        if second is not None:
            with contextlib.suppress(Exception):
                TABLES[broker][4]()
    details += first.details + (second.details if second is not None else [])
    return {"ours": first.cells, "celery": second.cells if second is not None else unavailable}


def bench_database(backend: str, size: dict[str, Any], celery_problem: str | None,
                   details: list[str]) -> dict[str, dict[str, Cell]]:
    """The database broker on one database, beside Celery with results there."""
    try:
        db = Database(backend)
    except Exception as exc:  # noqa: BLE001 - no database: its columns say so
        log(f"{backend}: cannot create a database: {exc}")
        problem = Cell(error=f"{backend} unavailable ({type(exc).__name__})")
        return {"ours": {"_all": problem}, "celery": {"_all": problem}}
    try:
        ours = Ours(db)
        log(f"{backend}: migrate ({db.url})")
        ours.migrate()
        return sides(ours, Plan(), db, size, celery_problem, backend, details)
    except Exception as exc:  # noqa: BLE001 - report, go on
        log(f"{backend}: {exc}")
        failed = Cell(error=f"failed: {type(exc).__name__}")
        return {"ours": {"_all": failed}, "celery": {"_all": failed}}
    finally:
        stop_all()
        db.drop()


def bench_broker(broker: str, size: dict[str, Any], celery_problem: str | None,
                 details: list[str]) -> report.Groups:
    """django_tasks and Celery on the same Redis or RabbitMQ, results in PostgreSQL and
    none."""
    with_results, no_results, name, broker_problem, wipe = TABLES[broker]
    problem = broker_problem()
    try:
        if problem:
            raise RuntimeError(problem)
        db = Database("postgres")
    except Exception as exc:  # noqa: BLE001 - no broker or no PostgreSQL: the table says so
        log(f"{name}: {exc}")
        cell = Cell(error=f"unavailable ({problem or type(exc).__name__})")
        return {title: {"ours": {"_all": cell}, "celery": {"_all": cell}}
                for title in (with_results, no_results)}
    groups: report.Groups = {}
    try:
        log(f"{name}: migrate ({db.url})")
        Ours(db, broker=broker).migrate()
        no_pending = Plan(enqueue_env={"TASKS_RESULT_BACKEND": "django://",
                                       "TASKS_STORE_PENDING": "False"})
        for title, results, plan in ((with_results, True, Plan()),
                                     (no_results, False, no_pending)):
            tag = "results in postgres" if results else "no results"
            ours = Ours(db, broker=broker, results=results)
            groups[title] = sides(ours, plan, db, size, celery_problem, f"{name}, {tag}",
                                  details, results=results, broker=broker)
    finally:
        stop_all()
        with contextlib.suppress(Exception):
            wipe()
        db.drop()
    return groups


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--brokers", default=",".join(BROKERS),
                        help="comma-separated: database, redis, amqp (default: all three)")
    parser.add_argument("--backends", default="sqlite,postgres",
                        help="databases for the database broker: sqlite, postgres (default: "
                             "both)")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes, a smoke run (writes a report only with --output)")
    parser.add_argument("--no-celery", action="store_true", help="skip the Celery columns")
    parser.add_argument("--output", default=None,
                        help="where to write the report (default: docs/benchmarks.md for a "
                             "full run, nowhere for --quick)")
    options = parser.parse_args()
    brokers = [b.strip() for b in options.brokers.split(",") if b.strip()]
    backends = [b.strip() for b in options.backends.split(",") if b.strip()]
    for kind, given, known in (("brokers", brokers, set(BROKERS)),
                               ("backends", backends, set(NAMES))):
        if set(given) - known:
            parser.error(f"unknown {kind}: {', '.join(sorted(set(given) - known))}")
    mode = "quick" if options.quick else "full"
    size = {**SIZES[mode], "quick": options.quick}

    began = time.monotonic()
    floor_line = floor.line()  # before any worker runs
    log(f"floor: {floor_line}")
    celery_problem = "skipped (--no-celery)" if options.no_celery else celery_ready()
    if celery_problem:
        log(f"Celery columns: {celery_problem}")
    # The database table's Celery runs on Redis: without Redis, those columns say so.
    celery_on_redis = celery_problem
    if not celery_problem and "database" in brokers:
        celery_on_redis = redis_problem()
    celery_versions = None
    if not celery_problem:
        with contextlib.suppress(Exception):
            celery_versions = run_code(Celery.python, CELERY_VERSIONS, dict(os.environ))
    details: list[str] = []
    database: report.Groups = {}
    redis: report.Groups = {}
    amqp: report.Groups = {}
    if "database" in brokers:
        for backend in backends:
            database[NAMES[backend]] = bench_database(backend, size, celery_on_redis, details)
    if "redis" in brokers:
        redis = bench_broker("redis", size, celery_problem, details)
    if "amqp" in brokers:
        amqp = bench_broker("amqp", size, celery_problem, details)
    took = time.monotonic() - began
    details.append(f"whole run: {took:.0f} s")

    sections = []
    if database:
        sections.append("### The database broker\n\n"
                        + report.table(database, report.database_rows(size)))
    if redis:
        sections.append("### Redis\n\n" + report.table(redis, report.broker_rows(size)))
    if amqp:
        sections.append("### RabbitMQ\n\n" + report.table(amqp, report.broker_rows(size)))
    tables = "\n\n".join(sections)
    target_lines = "\n".join(filter(None, (
        report.targets(database, redis, NAMES["postgres"], WITH_RESULTS, NO_RESULTS),
        report.amqp_targets(amqp, AMQP_WITH_RESULTS, AMQP_NO_RESULTS))))
    info = report.machine(celery_versions)
    print(tables, target_lines, f"Machine: {info}.", f"Floor: {floor_line}.",
          f"({mode} run, {took:.0f} s)", sep="\n\n")
    output = options.output or (None if options.quick else ROOT / "docs" / "benchmarks.md")
    if output:
        text = report.page(mode=mode, tables=tables, target_lines=target_lines,
                           machine_line=info, floor_line=floor_line, size=size,
                           details=details, took=took)
        path = Path(output)
        kept = READING.search(path.read_text()) if path.exists() else None
        if kept:
            text = READING.sub(lambda _: kept.group(0), text)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        log(f"wrote {output}")
    return 0


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


if __name__ == "__main__":
    atexit.register(stop_all)
    signal.signal(signal.SIGTERM, _terminate)
    sys.exit(main())
