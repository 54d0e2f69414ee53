"""Benchmark of enqueueing workflows: a group of 10,000 tasks, a chord of 10,000 and, for
comparison, ``Task.apply_many`` of 10,000 calls (the bulk path both use).

    python benchmarks/canvas.py                       # PostgreSQL and SQLite, 3 runs each
    python benchmarks/canvas.py --backends postgres --runs 5 --size 10000
    python benchmarks/canvas.py --redis redis://127.0.0.1:6379/13   # also the Redis broker

For each database (fresh, migrated) it times, in one process, each way of enqueueing
(the tables emptied between runs): from building the signatures to ``apply_async()``
returning, with the messages and their PENDING result rows written (on the database
broker, in one transaction). Prints the median and best of the runs as a Markdown table.
Target (issue 8): a group of 10,000 in under a second on the database broker on PostgreSQL.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import Database, log, run_code, run_command  # noqa: E402

TIMING = """
import json, statistics, time, django; django.setup()
from django.db import connection
from django_tasks import chord, group
from django_tasks.models import OutboxMessage, QueuedMessage, TaskGroup, TaskResult
from testproject.demo.tasks import add, tsum

def empty():
    for model in (QueuedMessage, TaskResult, TaskGroup, OutboxMessage):
        model.objects.all().delete()

def run_group():
    group(add.s(i, i) for i in range({size})).apply_async()

def run_chord():
    chord((add.s(i, i) for i in range({size})), tsum.s()).apply_async()

def run_many():
    add.apply_many(((i, i), {{}}) for i in range({size}))

found = {{}}
for name, enqueue in (("group", run_group), ("chord", run_chord), ("apply_many", run_many)):
    times = []
    for _ in range({runs}):
        empty()
        began = time.perf_counter()
        enqueue()
        times.append(time.perf_counter() - began)
        assert TaskResult.objects.count() == {size}, TaskResult.objects.count()
    found[name] = times
empty()
print(json.dumps(found))
"""


def measure(backend: str, size: int, runs: int, broker: str) -> dict[str, list[float]]:
    db = Database(backend)
    try:
        env = {**os.environ, "DATABASE_URL": db.url, "DEMO_BEAT_SCHEDULE": "False",
               "DJANGO_SETTINGS_MODULE": "testproject.settings", "TASKS_BROKER_URL": broker,
               "TASKS_RESULT_BACKEND": "django://", "TASKS_ALWAYS_EAGER": "False"}
        log(f"{backend} ({broker}): migrate")
        run_command([sys.executable, "manage.py", "migrate", "-v", "0"], env)
        log(f"{backend} ({broker}): {runs} runs of {size:,} tasks each way")
        found: dict[str, list[float]] = run_code(
            sys.executable, TIMING.format(size=size, runs=runs), env, timeout=1800)
        return found
    finally:
        db.drop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="postgres,sqlite")
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--redis", default="", help="also measure this Redis broker URL "
                                                     "(results stay in PostgreSQL)")
    args = parser.parse_args()
    setups = [(b, "django://") for b in args.backends.split(",") if b]
    if args.redis:
        setups.append(("postgres", args.redis))
    rows = []
    for backend, broker in setups:
        found = measure(backend, args.size, args.runs, broker)
        for way, times in found.items():
            ordered = sorted(times)
            median = ordered[len(ordered) // 2]
            rows.append((backend, broker.split("://")[0], way, median, ordered[0],
                         args.size / median))
    print(f"\nEnqueue {args.size:,} tasks; {args.runs} runs each; {platform.python_version()} "
          f"on {platform.machine()}, {os.cpu_count()} CPUs\n")
    print("| database | broker | enqueue | median s | best s | tasks/s (median) |")
    print("| --- | --- | --- | ---: | ---: | ---: |")
    for backend, broker, way, median, best, rate in rows:
        print(f"| {backend} | {broker} | {way} | {median:.3f} | {best:.3f} | {rate:,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
