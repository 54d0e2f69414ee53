"""The admin dashboard with 1,000,000 result rows: how long its page and its data endpoint take.

    python benchmarks/dashboard.py [--results 1000000] [--task-names 20] [--repeat 30]

Makes a scratch PostgreSQL database ``bench_dash_<random>`` on ``$BENCH_POSTGRES_URL``
(default ``postgres://postgres@127.0.0.1:5432/postgres``), migrates it, fills it with
1,000,000 result rows over the last day (a few task names, one in ten a failure), a day of
per-minute counters for every task name (SUCCESS, FAILURE and RETRY rows every minute, and
the hour rows workers write beside them), four
workers and 10,000 queued messages; then requests the dashboard page and its JSON endpoint
(last hour and last day) through Django's test client as a superuser and prints, for each, the
median, 95th percentile and maximum time and the number of queries, each twice: "cold" with
the per-minute counts the process keeps between refreshes dropped before every request (a
first request, or the one a minute that reads the whole day again), and as a page refreshing
every few seconds sees it. The database is dropped afterwards, whatever happens.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
TARGET_MS = 200.0


def _admin() -> Any:
    import psycopg

    return psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=10)


def fill(results: int, names: int) -> dict[str, float]:
    """The rows, written by PostgreSQL itself (generate_series); seconds each part took."""
    from django.db import connection

    spent = {}
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO django_tasks_taskresult (task_id, task_name, state, args, kwargs,
                result, traceback, queue, priority, worker, attempts, retries, created_at,
                started_at, date_done)
            SELECT md5(i::text), 'bench.tasks.task' || (i %% %s),
                   CASE WHEN i %% 10 = 0 THEN 'FAILURE' ELSE 'SUCCESS' END, '[1, 2]', '{}',
                   CASE WHEN i %% 10 = 0 THEN '{"exc_type": "ValueError", "exc_message": "bad"}'
                        ELSE '3' END,
                   NULL, 'default', 0, 'w1@bench', 1, 0, t - interval '1 second',
                   t - (i %% 1000) * interval '1 millisecond', t
            FROM (SELECT i, now() - (i * interval '1 day') / %s AS t
                  FROM generate_series(1, %s) AS i) AS s
            """, [names, results, results])
        spent["results"] = time.perf_counter() - started
        started = time.perf_counter()
        buckets = ", ".join(f"h{i:02d}" for i in range(28))
        values = ", ".join(f"CASE WHEN b = {i} THEN n ELSE 0 END" for i in range(28))
        cursor.execute(
            f"""
            INSERT INTO django_tasks_taskcounter (period, minute, task_name, state, count,
                runtime_count, runtime_sum, runtime_max, slowest_task_id, last_task_id,
                {buckets})
            SELECT 1, m, 'bench.tasks.task' || k, s, n, n, n * 0.05, 0.5 + k * 0.01,
                   md5(k::text || m::text), md5(m::text || k::text || s), {values}
            FROM (SELECT date_trunc('minute', now()) - minute_ago * interval '1 minute' AS m,
                         k, s, (CASE s WHEN 'SUCCESS' THEN 600 WHEN 'FAILURE' THEN 60
                                ELSE 6 END) + k AS n, 6 + (k %% 12) AS b
                  FROM generate_series(0, 1439) AS minute_ago, generate_series(0, %s) AS k,
                       unnest(ARRAY['SUCCESS', 'FAILURE', 'RETRY']) AS s) AS g
            """, [names - 1])
        sums = ", ".join(f"SUM({column})" for column in ("count", "runtime_count",
                                                          "runtime_sum", *buckets.split(", ")))
        cursor.execute(  # the hour rows workers write beside the minute rows
            f"""
            INSERT INTO django_tasks_taskcounter (period, minute, task_name, state, count,
                runtime_count, runtime_sum, {buckets}, runtime_max, slowest_task_id,
                last_task_id)
            SELECT 60, date_trunc('hour', minute), task_name, state, {sums}, MAX(runtime_max),
                   MAX(slowest_task_id), MAX(last_task_id)
            FROM django_tasks_taskcounter GROUP BY 2, 3, 4
            """, [])
        cursor.execute(
            """
            INSERT INTO django_tasks_queuedmessage (queue, priority, task_id, body, visible_at,
                deliveries, runs, created_at)
            SELECT CASE WHEN i %% 4 = 0 THEN 'mail' ELSE 'default' END, 0, 'q' || i,
                   '{"headers": {"task": "bench.tasks.task0"}}', now(), 0, 0, now()
            FROM generate_series(1, 10000) AS i
            """, [])
        cursor.execute(
            """
            INSERT INTO django_tasks_workerstate (hostname, kind, pid, pool, concurrency,
                queues, started_at, last_heartbeat)
            SELECT 'w' || i || '@bench', 'worker', 1000 + i, 'prefork', 2, 'default,mail',
                   now() - interval '1 hour', now()
            FROM generate_series(1, 4) AS i
            """, [])
        spent["counters, queue, workers"] = time.perf_counter() - started
        # As autovacuum leaves it: past minutes are never written again, so their pages are
        # all-visible and the chart reads the index alone.
        cursor.execute("VACUUM ANALYZE")
    return spent


def measure(client: Any, url: str, repeat: int, cold: bool) -> dict[str, float]:
    """Times of ``repeat`` requests; ``cold``: each with the kept per-minute counts dropped
    first (the first request of a process, or one a minute), else as a page refreshing."""
    from django.db import connection

    from django_tasks.results import stats

    for _ in range(3):  # warm: connection, templates, plans
        assert client.get(url).status_code == 200
    times = []
    queries: list[str] = []

    def counted(execute: Any, sql: str, *args: Any) -> Any:
        queries.append(sql)
        return execute(sql, *args)

    with connection.execute_wrapper(counted):
        assert client.get(url).status_code == 200
    for _ in range(repeat):
        if cold:
            stats.forget_cached()
        started = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200
    times.sort()
    return {"median": statistics.median(times), "p95": times[int(0.95 * (len(times) - 1))],
            "max": times[-1], "queries": len(queries), "bytes": len(response.content)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", type=int, default=1_000_000)
    parser.add_argument("--task-names", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=30)
    options = parser.parse_args()

    name = f"bench_dash_{uuid.uuid4().hex[:10]}"
    with _admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = urlsplit(ADMIN_URL)._replace(path=f"/{name}").geturl()
        os.environ.update({"DATABASE_URL": url, "DEBUG": "False", "DEMO_BEAT_SCHEDULE": "False",
                           "TASKS_BROKER_URL": "django://", "TASKS_RESULT_BACKEND": "django://",
                           "DJANGO_SETTINGS_MODULE": "testproject.settings"})
        sys.path.insert(0, str(ROOT))
        import django

        django.setup()
        from django.contrib.auth.models import User
        from django.core.management import call_command
        from django.db import connection
        from django.test import Client
        from django.test.utils import setup_test_environment
        from django.urls import reverse

        setup_test_environment()
        call_command("migrate", verbosity=0)
        spent = fill(options.results, options.task_names)
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM django_tasks_taskresult")
            results = cursor.fetchone()[0]
            cursor.execute("SELECT count(*) FROM django_tasks_taskcounter")
            counter_rows = cursor.fetchone()[0]
        client = Client()
        client.force_login(User.objects.create_superuser("bench", "b@example.com", "pw"))
        page = reverse("admin:django_tasks_dashboard_changelist")
        data = reverse("admin:django_tasks_dashboard_data")
        rows = [(f"{what}, last {window}{', cold' if cold else ''}", url, cold)
                for cold in (True, False)
                for what, url in (("page", page), ("endpoint", data))
                for window in ("hour", "day")]
        print(f"\n{results:,} result rows, {counter_rows:,} counter rows (a day, "
              f"{options.task_names} task names), 10,000 queued messages, 4 workers; "
              f"filled in " + ", ".join(f"{k} {v:.1f} s" for k, v in spent.items()) + "\n")
        print("| request | median ms | p95 ms | max ms | queries | bytes |")
        print("|---|---:|---:|---:|---:|---:|")
        worst = 0.0
        for label, target, cold in rows:
            m = measure(client, f"{target}?window={label.split()[2].rstrip(',')}",
                        options.repeat, cold)
            worst = max(worst, m["p95"])
            print(f"| {label} | {m['median']:.1f} | {m['p95']:.1f} | {m['max']:.1f} | "
                  f"{m['queries']} | {m['bytes']:,} |")
        print(f"\nTarget: under {TARGET_MS:.0f} ms: {'met' if worst < TARGET_MS else 'MISSED'} "
              f"(worst p95 {worst:.1f} ms over {options.repeat} requests each)")
        return 0 if worst < TARGET_MS else 1
    finally:
        try:
            from django.db import connections

            connections.close_all()
        except Exception:  # noqa: BLE001 - Django may not be set up yet
            pass
        with _admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    sys.exit(main())
