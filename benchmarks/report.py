"""The report: Markdown tables of the cells ``measure.py`` produced, the targets met or not,
the machine line, and the page written to docs/benchmarks.md (its text is ``page.md``)."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import rabbitmq
from benchmarks.common import POSTGRES_URL
from benchmarks.frameworks import (
    BENCH_VENV,
    CELERY_PACKAGES,
    POLL,
    REDIS_POLL,
    REDIS_URL,
)
from benchmarks.measure import Cell

#: {column group title: {"ours": cells, "celery": cells}}
Groups = dict[str, dict[str, dict[str, Cell]]]


@dataclass
class Row:
    key: str
    label: str
    digits: int = 0


def database_rows(size: dict[str, Any]) -> list[Row]:
    return [
        Row("enqueue", f"enqueue: `noop.delay()` one by one, {size['enqueue']:,} calls "
            f"after {size['warm']} warm-up ones (tasks/s, higher is better)"),
        Row("bulk", f"bulk enqueue: `noop.delay_many()` of {size['bulk']:,} calls, after "
            f"one of {size['warm']}; Celery: a `group` (tasks/s, higher is better)"),
        *common_rows(size),
    ]


def broker_rows(size: dict[str, Any]) -> list[Row]:
    """The Redis and RabbitMQ tables' rows."""
    return [
        Row("enqueue", f"enqueue: `noop.delay()` one by one, {size['enqueue']:,} calls "
            f"after {size['warm']} warm-up ones; django_tasks with the PENDING row (results "
            "column) or with `TASKS_STORE_PENDING = False` (no-results column) (tasks/s, "
            "higher is better)"),
        Row("bulk", f"bulk enqueue: `noop.delay_many()` of {size['bulk']:,} calls, after "
            f"one of {size['warm']}, with PENDING rows or without as above; Celery: a "
            "`group` (tasks/s, higher is better)"),
        *common_rows(size),
    ]


def common_rows(size: dict[str, Any]) -> list[Row]:
    return [
        Row("drain1", f"drain {size['drain']:,} queued no-op tasks, -c 1 (tasks/s from "
            "spawn minus start-up, higher is better)"),
        Row("drain2", f"drain {size['drain']:,} queued no-op tasks, -c 2 (tasks/s from "
            "spawn minus start-up, higher is better)"),
        *(Row(f"depth{i}", f"drain rate, -c 2, with {depth:,} no-op tasks queued; Celery: "
              f"its first {min(depth, size['celery_drain']):,} done (tasks/s from spawn "
              "minus start-up, higher is better)") for i, depth in enumerate(size["depths"])),
        Row("startup1", "worker start-up, -c 1: spawn to first task done (s, lower is "
            "better)", 2),
        Row("startup2", "worker start-up, -c 2: spawn to first task done (s, lower is "
            "better)", 2),
        Row("latency", "round trip `add.delay(i, i).get()`, -c 2, warm: p50 / p95 / p99 "
            "(ms, lower is better)", 1),
        Row("latency_fast", "round trip `add.delay(i, i).get(interval=0.005)`, -c 2, warm: "
            "p50 / p95 / p99 (ms, lower is better)", 1),
        Row("latency_countdown", "round trip `add.delay(i, i).get(interval=0.005)`, -c 2, "
            f"warm, with {size['countdown']:,} countdown tasks (3,600 s) pending: p50 / p95 "
            "/ p99 (ms, lower is better)", 1),
        Row("memory1", "worker memory idle after the drain, -c 1, main + pool processes: "
            "RSS / PSS / USS (MiB, lower is better)"),
        Row("memory2", "worker memory idle after the drain, -c 2, main + pool processes: "
            "RSS / PSS / USS (MiB, lower is better)"),
        Row("memory_before_countdown", "worker memory, -c 2, after the round trips, just "
            "before the countdown tasks are queued: RSS / PSS / USS (MiB, lower is better)"),
        Row("memory_countdown", f"worker memory, -c 2, with {size['countdown']:,} "
            "countdown tasks (3,600 s) pending: RSS / PSS / USS (MiB, lower is better)"),
    ]


def fmt(value: float, digits: int) -> str:
    return f"{value:,.{digits}f}"


def values(cell: Cell | None) -> tuple[float, ...] | None:
    if cell is None or cell.value is None:
        return None
    return cell.value if isinstance(cell.value, tuple) else (cell.value,)


def cell_text(cells: dict[str, Cell], row: Row) -> str:
    if "_all" in cells:
        return cells["_all"].error
    cell = cells.get(row.key)
    if cell is None:
        return "-"
    found = values(cell)
    if found is None:
        return f"error: {cell.error}" if cell.error else "-"
    text = " / ".join(fmt(v, row.digits) for v in found)
    return f"{text} {cell.note}".strip()


def ratio_text(ours: dict[str, Cell], celery: dict[str, Cell], row: Row) -> str:
    va, vb = values(ours.get(row.key)), values(celery.get(row.key))
    if va is None or vb is None:
        return "-"
    return " / ".join(f"{x / y:.2f}" if y else "-" for x, y in zip(va, vb, strict=False))


def table(groups: Groups, rows: list[Row]) -> str:
    header = ["measurement"]
    for title in groups:
        header += [f"{title}: django_tasks", f"{title}: Celery", "ratio"]
    lines = ["| " + " | ".join(header) + " |", "|---" + "|---:" * (len(header) - 1) + "|"]
    for row in rows:
        line = [row.label]
        for per in groups.values():
            ours, celery = per.get("ours", {}), per.get("celery", {})
            line += [cell_text(ours, row), cell_text(celery, row),
                     ratio_text(ours, celery, row)]
        lines.append("| " + " | ".join(line) + " |")
    return "\n".join(lines)


# -- targets --------------------------------------------------------------------------------


def figure(groups: Groups, group: str, side: str, key: str, index: int = 0) -> float | None:
    found = values(groups.get(group, {}).get(side, {}).get(key))
    return found[index] if found else None


def verdict(what: str, value: float | None, target: float, unit: str, *,
            at_most: bool = False, digits: int = 0) -> str:
    if value is None:
        return f"- {what}: not measured in this run."
    met = value <= target if at_most else value >= target
    sign = "≤" if at_most else "≥"
    return (f"- {what} {sign} {fmt(target, digits)} {unit}: measured {fmt(value, digits)} "
            f"{unit}, {'met' if met else '**not met**'}.")


def targets(database: Groups, redis: Groups, pg: str, with_results: str, no_results: str
            ) -> str:
    lines = []
    if database:
        lines += [
            verdict("database broker on PostgreSQL, drain at -c 2 with results",
                    figure(database, pg, "ours", "drain2"), 5000, "tasks/s"),
            round_trip("database broker on PostgreSQL", database, pg, 2.0),
        ]
    if redis:
        db_enqueue = figure(database, pg, "ours", "enqueue")
        lines += [
            verdict("Redis, `delay()` one by one without the PENDING row",
                    figure(redis, no_results, "ours", "enqueue"), 12000, "tasks/s"),
            verdict("Redis, `delay()` one by one with the PENDING row, at least the database "
                    "broker's enqueue on PostgreSQL in this run",
                    figure(redis, with_results, "ours", "enqueue"), db_enqueue or 0,
                    "tasks/s") if db_enqueue else
            "- Redis, `delay()` with the PENDING row at least as fast as the database "
            "broker: not compared (the database broker was not measured in this run).",
            verdict("Redis, `delay_many()` with PENDING rows",
                    figure(redis, with_results, "ours", "bulk"), 30000, "tasks/s"),
            verdict("Redis, `delay_many()` without PENDING rows",
                    figure(redis, no_results, "ours", "bulk"), 30000, "tasks/s"),
            verdict("Redis without results, drain at -c 2",
                    figure(redis, no_results, "ours", "drain2"), 30000, "tasks/s"),
        ]
        ours, theirs = (figure(redis, no_results, who, "drain2") for who in ("ours", "celery"))
        lines.append(verdict("Redis without results, drain at -c 2, times Celery's",
                             ours / theirs if ours and theirs else None, 25, "times", digits=1))
        lines += [
            verdict("Redis with results in PostgreSQL, drain at -c 2",
                    figure(redis, with_results, "ours", "drain2"), 15000, "tasks/s"),
            round_trip("Redis with results in PostgreSQL", redis, with_results, 1.5),
        ]
    lines += countdown_memory(database, redis)
    return "\n".join(lines)


def round_trip(what: str, groups: Groups, title: str, limit: float) -> str:
    """Issue 7: a warm worker's round trip (p50, ``get()``'s defaults) in ``limit`` ms."""
    return verdict(f"{what}, round trip p50 with `get()`'s defaults",
                   figure(groups, title, "ours", "latency"), limit, "ms", at_most=True,
                   digits=2)


def countdown_memory(*tables: Groups) -> list[str]:
    """Issue 7: the 10,000 countdown tasks cost the worker no memory: its USS with them
    pending is within 2 MiB (the allocator's noise) of its USS just before they were queued
    (after the round trips, whose own allocations are not theirs). A worker that held them
    would grow by tens of MiB (Celery's grows by over a hundred)."""
    lines = []
    for groups in tables:
        for title in groups:
            before, held = (figure(groups, title, "ours", key, 2)
                            for key in ("memory_before_countdown", "memory_countdown"))
            grew = held - before if before is not None and held is not None else None
            lines.append(verdict(f"{title}, worker USS with the countdown tasks pending, "
                                 "above its USS just before they were queued", grew, 2.0,
                                 "MiB", at_most=True, digits=1))
    return lines


def amqp_targets(amqp: Groups, with_results: str, no_results: str) -> str:
    """Issue 7: on RabbitMQ, django_tasks drains at -c 2 at least 5 times Celery's rate, and
    the countdown tasks (held in the database until due) cost its worker no memory."""
    lines = []
    for title, what in ((with_results, "with results in PostgreSQL"),
                        (no_results, "without results")):
        if title not in amqp:
            continue
        ours, theirs = (figure(amqp, title, who, "drain2") for who in ("ours", "celery"))
        lines.append(verdict(f"RabbitMQ {what}, drain at -c 2, times Celery's",
                             ours / theirs if ours and theirs else None, 5, "times",
                             digits=1))
    lines += countdown_memory(amqp)
    return "\n".join(lines)


# -- machine and page -----------------------------------------------------------------------


def machine(celery_versions: dict[str, str] | None) -> str:
    import django
    import psutil

    pg = redis_version = "-"
    with contextlib.suppress(Exception):
        import psycopg

        with psycopg.connect(POSTGRES_URL, connect_timeout=5) as conn:
            pg = str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
    with contextlib.suppress(Exception):
        import redis

        redis_version = str(redis.Redis.from_url(REDIS_URL, socket_timeout=5)
                            .info("server")["redis_version"])
    rabbit = "-"
    with contextlib.suppress(Exception):
        rabbit = rabbitmq.server_version()
    cpu = platform.processor() or "-"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram = psutil.virtual_memory().total / 2**30
    parts = [f"{os.cpu_count()} CPUs ({cpu})", f"{ram:.0f} GiB RAM",
             f"Python {platform.python_version()}", f"Django {django.get_version()}",
             f"PostgreSQL {pg}", f"SQLite {sqlite3.sqlite_version}", f"Redis {redis_version}",
             f"RabbitMQ {rabbit}"]
    if celery_versions:
        parts.append(f"Celery {celery_versions.get('celery')} with django-celery-results "
                     f"(Django {celery_versions.get('django')})")
    parts.append(dt.datetime.now().strftime("%Y-%m-%d %H:%M"))
    return ", ".join(parts)


def page(*, mode: str, tables: str, target_lines: str, machine_line: str, floor_line: str,
         size: dict[str, Any], details: list[str], took: float) -> str:
    template = (Path(__file__).parent / "page.md").read_text()
    return template.format(
        mode=mode, tables=tables, targets=target_lines, machine=machine_line,
        floor=floor_line,
        enqueue=size["enqueue"], bulk=size["bulk"], drain=size["drain"],
        celery_drain=size["celery_drain"], countdown=size["countdown"], poll=POLL,
        depths=" / ".join(f"{depth:,}" for depth in size["depths"]),
        redis_poll=REDIS_POLL,
        repeats=size["startup_repeats"], drain_repeats=size["drain_repeats"],
        warm=size["warm"], calls=size["calls"],
        celery_calls=size["celery_default_calls"],
        venv=os.path.relpath(BENCH_VENV, Path(__file__).resolve().parents[1]),
        packages=" ".join(f"'{p}'" if "[" in p else p for p in CELERY_PACKAGES),
        details="\n".join(f"- {d}" for d in details), minutes=round(took / 60))
