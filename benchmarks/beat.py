"""Benchmark of ``manage.py taskbeat`` at scale: 10,000 enabled periodic tasks, 100 of them
due every second.

    python benchmarks/beat.py                      # PostgreSQL and SQLite, 60 s each
    python benchmarks/beat.py --quick              # 10 s each, a smoke run; prints only
    python benchmarks/beat.py --backends postgres

For each database (fresh, migrated) it creates the schedules, runs one ``taskbeat`` process
(tick 1 s, no worker: the queue just fills) and reports:

- the beat's CPU share of one core (process CPU time over wall time) and its memory;
- the number of SQL queries per tick, counted on the same ticks run in this process (it
  must not grow with the number of schedules);
- the lateness of each enqueue: the queued result row's creation time minus the slot's
  due time, p50 and p99.

Targets (issue: taskbeat): under 10 % of one core, a constant number of queries per tick,
p99 lateness under 1 s. Prints a Markdown table and writes docs/benchmarks-beat.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import (  # noqa: E402 - after the path is set
    Database,
    log,
    memory_mib,
    percentile,
    run_code,
    run_command,
    running,
)

SIZES = {"full": {"seconds": 60, "schedules": 10_000, "due": 100, "ticks": 20},
         "quick": {"seconds": 10, "schedules": 10_000, "due": 100, "ticks": 5}}

# Setup: the schedules, in bulk (save() is not needed: next_run_at is set directly).
CREATE = """
import datetime as dt, django; django.setup()
from django_tasks.models import IntervalSchedule, PeriodicTask
now = dt.datetime.now(dt.UTC)
second = IntervalSchedule.objects.create(every=1, period="seconds")
day = IntervalSchedule.objects.create(every=1, period="days")
rows = [PeriodicTask(name=f"p{{i}}", task="testproject.demo.tasks.noop",
                     interval=second if i < {due} else day,
                     next_run_at=now + dt.timedelta(seconds=1 if i < {due} else 86400))
        for i in range({schedules})]
PeriodicTask.objects.bulk_create(rows, batch_size=1000)
print(PeriodicTask.objects.count())
"""
# Queries per tick, on ticks run here (the same code the process runs).
QUERIES = """
import json, time, django; django.setup()
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_tasks.beat.scheduler import Scheduler
beat = Scheduler("bench-counter")
counts = []
for _ in range({ticks}):
    with CaptureQueriesContext(connection) as queries:
        report = beat.tick()
    counts.append([len(queries.captured_queries), report.queued])
    time.sleep(1)
print(json.dumps(counts))
"""
# Runs due while the beat was measured (not the first ticks, which catch up the runs that
# fell due while it started).
LATENESS = """
import datetime as dt, json, django; django.setup()
from django_tasks.models import BeatSlot, TaskResult
created = dict(TaskResult.objects.values_list("task_id", "created_at"))
since = dt.datetime.fromtimestamp({since}, dt.UTC)
out = [(created[task_id] - due).total_seconds()
       for task_id, due in BeatSlot.objects.filter(beat="bench-beat", due_at__gte=since)
       .values_list("task_id", "due_at") if task_id in created]
print(json.dumps(out))
"""


def bench(backend: str, size: dict[str, Any]) -> dict[str, Any]:
    import psutil

    db = Database(backend)
    try:
        env = {**os.environ, "DATABASE_URL": db.url, "DEMO_BEAT_SCHEDULE": "False",
               "DJANGO_SETTINGS_MODULE": "testproject.settings",
               "TASKS_LOGLEVEL": "WARNING", "PYTHONPATH": str(ROOT)}
        run_command([sys.executable, "manage.py", "migrate", "-v", "0"], env)
        log(f"{backend}: {size['schedules']:,} schedules, {size['due']} due every second")
        run_code(sys.executable, CREATE.format(**size), env)
        logfile = db.tmp / "beat.log"
        cmd = [sys.executable, "manage.py", "taskbeat", "--tick", "1", "-l", "warning",
               "-n", "bench-beat"]
        with running(cmd, env, logfile) as proc:
            time.sleep(3)  # start-up and the first ticks
            process = psutil.Process(proc.pid)
            since = time.time()
            cpu_before, wall_before = sum(process.cpu_times()[:2]), time.monotonic()
            time.sleep(size["seconds"])
            cpu = (sum(process.cpu_times()[:2]) - cpu_before) / (time.monotonic() - wall_before)
            rss, _pss, uss = memory_mib(proc.pid)
        lateness = run_code(sys.executable, LATENESS.format(since=since), env)
        counts = run_code(sys.executable, QUERIES.format(**size), env)
        queries = sorted({c for c, _ in counts})
        return {"cpu": cpu * 100, "rss": rss, "uss": uss, "queued": len(lateness),
                "p50": percentile(lateness, 0.5), "p99": percentile(lateness, 0.99),
                "queries": queries, "per_tick": [q for _, q in counts]}
    finally:
        db.drop()


def table(results: dict[str, dict[str, Any]], size: dict[str, Any]) -> str:
    names = list(results)
    lines = ["| measurement | " + " | ".join(names) + " |",
             "|---|" + "---:|" * len(names)]

    def row(label: str, cell: Any) -> None:
        lines.append(f"| {label} | " + " | ".join(cell(results[n]) for n in names) + " |")

    row("beat CPU, share of one core (%, lower is better; target < 10)",
        lambda r: f"{r['cpu']:.1f}")
    row("SQL queries per tick (a constant number is the target)",
        lambda r: " or ".join(str(q) for q in r["queries"]))
    row(f"enqueue lateness p50 / p99 (s, lower is better; target p99 < 1), "
        f"over {size['seconds']} s", lambda r: f"{r['p50']:.3f} / {r['p99']:.3f}")
    row(f"runs queued while measured ({size['due']} a second is on time)",
        lambda r: f"{r['queued']:,}")
    row("beat memory RSS / USS (MiB)", lambda r: f"{r['rss']:.0f} / {r['uss']:.0f}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="postgres,sqlite")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--output", default=None,
                        help="where to write the page (default docs/benchmarks-beat.md; "
                             "--quick writes nothing unless given)")
    options = parser.parse_args()
    size = SIZES["quick" if options.quick else "full"]
    results = {backend: bench(backend, size) for backend in options.backends.split(",")}
    text = table(results, size)
    print(text)
    output = options.output or (None if options.quick else str(ROOT / "docs" /
                                                                "benchmarks-beat.md"))
    if output:
        import django

        when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        page = (
            "# Benchmark: the beat at scale\n\n"
            f"`python benchmarks/beat.py` ({'quick' if options.quick else 'full'} run, "
            f"{when}): {size['schedules']:,} enabled periodic tasks in the database, "
            f"{size['due']} of them due every second (the rest daily), one `taskbeat` "
            f"process with a 1 s tick, measured for {size['seconds']} s per database. "
            "No worker runs: the queue just fills.\n\n"
            f"{text}\n\n"
            "- **CPU** is the process's user and system time over the wall time measured.\n"
            "- **Queries per tick** are counted on ticks run in the benchmark process "
            "against the same database (the same code the beat runs): computing missing "
            "next runs, claiming the due rows, inserting their slots, checking which are "
            "ours, writing result and queue rows, and moving the rows on. Their number does "
            "not depend on how many schedules exist, nor on how many are due (up to 500 a "
            "transaction). Between ticks the beat makes one more indexed lookup, of the "
            "earliest next run, to wake for it rather than at its next tick.\n"
            "- **Lateness** is each queued run's PENDING row creation time minus its due "
            "time, for the runs due while the beat was measured (its first ticks, which "
            "catch up what fell due while it started, are left out): the wait for the "
            "beat to wake plus the tick's own work.\n\n"
            f"Machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, Django "
            f"{django.get_version()}, {json.dumps(list(results))} databases.\n"
        )
        Path(output).write_text(page)
        log(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
