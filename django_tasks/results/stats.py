"""What the dashboard and the Prometheus view show, read from the per-minute counters.

Every read is bounded by the counter rows of its window, never by the result rows: a
snapshot is a fixed handful of queries however many results the table holds. The last hour
is read from minute rows; the last day from the hour rows of its whole hours and the minute
rows of the two partial hours at its ends (``rows_covering``). The per-minute chart reads only an
index (``tasks_counter_chart_idx``). The only result rows read are those of the last failures
shown, by their task ids (the unique index).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db.models import Max, Q, Sum

from .. import clock, outbox, states
from ..brokers.base import Broker, QueueCounts
from ..conf import get_broker, get_result_store, task_settings
from ..exceptions import BrokerUnreachable
from ..models import TaskCounter, TaskResult, WorkerState
from ..models.counters import BUCKET_FIELDS, HOUR, MINUTE
from ..registry import registry
from . import counters

WINDOWS = {"hour": dt.timedelta(hours=1), "day": dt.timedelta(days=1)}
#: The states charted, in this order; a task's own states are added after them.
CHARTED = (states.SUCCESS, states.FAILURE, states.RETRY, states.REVOKED)
TASK_NAMES_SHOWN = 50
TOP = 10


def counters_alias() -> str | None:
    """The database the counters live in: the result store's; None without one."""
    store = get_result_store()
    return store.database_alias if store is not None else None


def _minute(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.UTC).replace(second=0, microsecond=0)


def _hour_up(moment: dt.datetime) -> dt.datetime:
    floor = moment.replace(minute=0)
    return floor if floor == moment else floor + dt.timedelta(hours=1)


def rows_covering(since: dt.datetime, until: dt.datetime) -> Q:
    """The counter rows that cover the minutes from ``since`` to ``until`` once each: hour
    rows for the whole hours between them, minute rows for the rest."""
    since, until = _minute(since), _minute(until)
    first, last = _hour_up(since), until.replace(minute=0)
    if first >= last:
        return Q(period=MINUTE, minute__gte=since, minute__lte=until)
    return (Q(period=HOUR, minute__gte=first, minute__lt=last)
            | Q(period=MINUTE, minute__gte=since, minute__lt=first)
            | Q(period=MINUTE, minute__gte=last, minute__lte=until))


@dataclass(slots=True)
class _Minutes:
    """The per-minute counts of minutes that have settled, kept between refreshes."""

    read_at: float  # time.monotonic()
    first: int  # the first minute kept, Unix seconds
    settled: int  # minutes before this one are kept; later ones are read every time
    counts: dict[int, tuple[int, ...]]


#: Per database alias. A minute is settled two minutes after it ends (a worker's batch is
#: written within that, except after an outage); everything is read again every minute.
_minutes: dict[str, _Minutes] = {}
SETTLE = 120
REREAD = 60.0


def forget_cached() -> None:
    """Drop the kept per-minute counts (tests that change the counters' past)."""
    _minutes.clear()


def _minute_counts(alias: str, first: int, last: int) -> dict[int, tuple[int, ...]]:
    """Counts per minute (Unix seconds) from ``first`` to ``last``: the state columns of
    ``CHARTED`` and a last one for other states. The minutes that settled are kept, so that
    a page refreshing every few seconds reads a few minutes, not a day of them."""
    kept = _minutes.get(alias)
    if kept is None or kept.first > first or time.monotonic() - kept.read_at > REREAD:
        kept = _Minutes(time.monotonic(), first, first, {})
    now = int(clock.now().timestamp())
    settled = max(kept.settled, min(last + 60, now // 60 * 60 - SETTLE))
    # One row per minute, a column per state (1,440 rows for a day, not one per state).
    by_state = {f"n{i}": Sum("count", filter=Q(state=state)) for i, state in enumerate(CHARTED)}
    rows = (TaskCounter.objects.using(alias)
            .filter(period=MINUTE, minute__gte=dt.datetime.fromtimestamp(kept.settled, dt.UTC),
                    minute__lte=dt.datetime.fromtimestamp(last, dt.UTC))
            .values_list("minute").annotate(**by_state,
                                            other=Sum("count", filter=~Q(state__in=CHARTED)))
            .order_by())
    fresh = {int(minute.timestamp()): tuple(n or 0 for n in counts) for minute, *counts in rows}
    if settled > kept.settled:  # a new object: another thread may be reading the old one
        counts = {m: n for m, n in kept.counts.items() if m >= first}
        counts.update((m, n) for m, n in fresh.items() if m < settled)
        kept = _Minutes(kept.read_at, first, settled, counts)
    _minutes[alias] = kept
    return {**kept.counts, **fresh}


def per_minute(alias: str, since: dt.datetime, until: dt.datetime) -> dict[str, Any]:
    """Runs per minute by state from ``since`` to ``until`` (minutes with none are 0), and
    the failure rate per minute (failures over successes and failures; None without any)."""
    first, last = _minute(since), _minute(until)
    size = int((last - first).total_seconds() // 60) + 1
    series: dict[str, list[int]] = {state: [0] * size for state in CHARTED}
    other = [0] * size
    start = first.timestamp()
    for minute, counts in _minute_counts(alias, int(start), int(last.timestamp())).items():
        index = int((minute - start) // 60)
        if 0 <= index < size:
            for state, n in zip(CHARTED, counts, strict=False):
                series[state][index] = n
            other[index] = counts[-1]
    if any(other):  # a task's own final states, if any
        series["other"] = other
    failed, succeeded = series[states.FAILURE], series[states.SUCCESS]
    rate = [round(f / (f + s), 4) if f + s else None for f, s in zip(failed, succeeded,
                                                                      strict=True)]
    return {"t": [int(start) + 60 * i for i in range(size)], "series": series,
            "failure_rate": rate}


def task_table(alias: str, rows_of: Q) -> list[dict[str, Any]]:
    """Per task name over the window: runs by state, failure rate, mean, p50/p95/p99 and
    maximum runtime; the busiest names first."""
    by_state = {state.lower(): Sum("count", filter=Q(state=state)) for state in CHARTED}
    failed = Q(state=states.FAILURE)
    rows: Any = (TaskCounter.objects.using(alias).filter(rows_of)
            .values("task_name")
            .annotate(total=Sum("count"), runtime_count=Sum("runtime_count"),
                      runtime_sum=Sum("runtime_sum"), runtime_max=Max("runtime_max"),
                      failed_minute=Max("minute", filter=failed & Q(period=MINUTE)),
                      failed_hour=Max("minute", filter=failed & Q(period=HOUR)),
                      **by_state, **{name: Sum(name) for name in BUCKET_FIELDS})
            .order_by("-total", "task_name")[:TASK_NAMES_SHOWN])
    table = []
    row: dict[str, Any]
    for row in rows:
        buckets = [int(row[name] or 0) for name in BUCKET_FIELDS]
        top = float(row["runtime_max"] or 0.0)
        done = int(row["success"] or 0) + int(row["failure"] or 0)
        table.append({
            "task_name": row["task_name"], "total": int(row["total"] or 0),
            **{state.lower(): int(row[state.lower()] or 0) for state in CHARTED},
            "failure_rate": round(int(row["failure"] or 0) / done, 4) if done else None,
            "mean": (row["runtime_sum"] / row["runtime_count"]) if row["runtime_count"]
            else None,
            "p50": counters.percentile(buckets, 0.50, top),
            "p95": counters.percentile(buckets, 0.95, top),
            "p99": counters.percentile(buckets, 0.99, top),
            "max": top if row["runtime_count"] else None,
            "last_failure": _last_failure(row["failed_minute"], row["failed_hour"]),
        })
    return table


def _last_failure(minute: dt.datetime | None, hour: dt.datetime | None) -> tuple[int, Any]:
    """The row of a task's last failure in the window: (period, minute), or (0, None)."""
    if minute is not None and (hour is None or minute >= hour + dt.timedelta(minutes=59)):
        return MINUTE, minute
    return (HOUR, hour) if hour is not None else (0, None)


def slowest(alias: str, rows_of: Q) -> list[dict[str, Any]]:
    """The slowest runs of the window: the slowest of each counter row, slowest first."""
    rows = (TaskCounter.objects.using(alias)
            .filter(rows_of, runtime_count__gt=0)
            .order_by("-runtime_max")
            .values("task_name", "state", "minute", "runtime_max", "slowest_task_id")[:TOP])
    return [{"task_name": r["task_name"], "state": r["state"],
             "minute": int(r["minute"].timestamp()), "runtime": r["runtime_max"],
             "task_id": r["slowest_task_id"]} for r in rows]


def failures(alias: str, table: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The task names that failed most in the window, each with its last failure's error
    (two queries: the counter rows of those last failures, then their result rows)."""
    failing = sorted((row for row in table if row["failure"]),
                     key=lambda row: (-row["failure"], row["task_name"]))[:TOP]
    if not failing:
        return []
    match = Q()
    for row in failing:
        period, minute = row["last_failure"]
        match |= Q(task_name=row["task_name"], period=period, minute=minute)
    last = dict(TaskCounter.objects.using(alias).filter(match, state=states.FAILURE)
                .values_list("task_name", "last_task_id"))
    texts = dict(TaskResult.objects.using(alias)
                 .filter(task_id__in=[i for i in last.values() if i])
                 .values_list("task_id", "result"))
    shown = []
    for row in failing:
        task_id = last.get(row["task_name"], "")
        shown.append({"task_name": row["task_name"], "failures": row["failure"],
                      "failure_rate": row["failure_rate"], "last_task_id": task_id,
                      "last_error": error_line(texts.get(task_id))})
    return shown


def error_line(text: str | None) -> str:
    """``ValueError: message`` from a stored failure result; '' when there is none."""
    if not text:
        return ""
    try:
        value = json.loads(text)
    except ValueError:
        return text[:200]
    if isinstance(value, dict) and "exc_type" in value:
        return f"{value['exc_type']}: {value.get('exc_message', '')}"[:200]
    return str(value)[:200]


def workers(now: dt.datetime) -> list[dict[str, Any]]:
    """The worker and beat rows with whether each still beats (three heartbeats)."""
    deadline = now - dt.timedelta(seconds=3 * float(task_settings.HEARTBEAT_SECONDS))
    rows = (WorkerState.objects.using(get_broker().home_alias).order_by("hostname")
            .values("hostname", "kind", "pool", "concurrency", "queues", "last_heartbeat")[:200])
    return [{**row, "last_heartbeat": int(row["last_heartbeat"].timestamp()),
             "alive": row["last_heartbeat"] >= deadline} for row in rows]


def queue_names(workers_seen: Sequence[dict[str, Any]]) -> set[str]:
    """The default queue, the queues of registered tasks and those the workers consume."""
    queues = {str(task_settings.DEFAULT_QUEUE)}
    queues.update(str(registry.get(name).queue) for name in registry
                  if registry.get(name).queue)
    for row in workers_seen:
        queues.update(_consumed(row))
    return queues


def _consumed(worker: dict[str, Any]) -> list[str]:
    return [q.strip() for q in str(worker["queues"]).split(",") if q.strip()]


def queue_depths(workers_seen: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Each queue's messages as the broker counts them (``Broker.queue_counts``): ready,
    delayed and in flight (``None`` where the broker cannot know), the workers online that
    consume it, and, on a broker that publishes through the outbox, the outbox rows not
    published yet. ``depths`` is each queue's total (what is known of it).

    The queues: those of ``queue_names`` and every other one the broker finds messages in.
    One call to the broker, and one query on the outbox where there is one."""
    broker = get_broker()
    data: dict[str, Any] = {"broker": broker.describe(), "counts": {}, "depths": {},
                            "outbox": _has_outbox(broker), "error": ""}
    try:
        counts = broker.queue_counts(sorted(queue_names(workers_seen)))
        unsent = ({q: n for q, (n, _) in outbox.waiting(broker.home_alias).items() if n}
                  if data["outbox"] else {})
    except Exception as exc:  # noqa: BLE001 - the rest of the page still shows
        # A broker's own "unreachable" error names its URL with the password hidden.
        data["error"] = (f"{type(exc).__name__}: {exc}" if isinstance(exc, BrokerUnreachable)
                         else type(exc).__name__)
        return data
    consumers: dict[str, int] = {}
    for row in workers_seen:
        if row["alive"] and row["kind"] == "worker":
            for queue in set(_consumed(row)):
                consumers[queue] = consumers.get(queue, 0) + 1
    for queue in sorted(set(counts) | set(unsent)):
        n = counts.get(queue, QueueCounts(0, 0, 0))
        data["counts"][queue] = {
            "ready": n.ready, "delayed": n.delayed, "in_flight": n.in_flight,
            "outbox": unsent.get(queue, 0) if data["outbox"] else None,
            "consumers": consumers.get(queue, 0)}
        data["depths"][queue] = n.total
    return data


def _has_outbox(broker: Broker) -> bool:
    """Whether messages published in a transaction wait in the outbox table first."""
    caps = broker.capabilities
    return caps.durable and not caps.transactional


def snapshot(window: str = "hour", now: dt.datetime | None = None) -> dict[str, Any]:
    """Everything the dashboard shows, as JSON-ready data."""
    now = now or clock.now()
    span = WINDOWS.get(window, WINDOWS["hour"])
    since = _minute(now - span) + dt.timedelta(minutes=1)
    alias = counters_alias()
    seen = workers(now)
    data: dict[str, Any] = {
        "now": int(now.timestamp()), "window": window if window in WINDOWS else "hour",
        "counted": alias is not None, "workers": seen,
        "workers_online": sum(1 for w in seen if w["alive"] and w["kind"] == "worker"),
        "queues": queue_depths(seen),
    }
    if alias is None:
        return {**data, "day": None, "hour": None, "tasks": [], "slowest": [],
                "failures": [], "totals": {}}
    day = per_minute(alias, now - WINDOWS["day"] + dt.timedelta(minutes=1), now)
    hour = {key: values[-60:] for key, values in day.items() if key != "series"}
    hour["series"] = {state: values[-60:] for state, values in day["series"].items()}
    rows_of = rows_covering(since, now)
    table = task_table(alias, rows_of)
    chart = hour if span <= WINDOWS["hour"] else day
    totals = {state: sum(values) for state, values in chart["series"].items()}
    done = totals[states.SUCCESS] + totals[states.FAILURE]
    failing = failures(alias, table)
    for row in table:
        del row["last_failure"]
    return {**data, "day": day, "hour": hour, "tasks": table,
            "slowest": slowest(alias, rows_of), "failures": failing,
            "totals": totals,
            "failure_rate": round(totals[states.FAILURE] / done, 4) if done else None}


def totals(alias: str) -> list[dict[str, Any]]:
    """Every run counted so far, by task name and state: counts, runtime sums and histogram
    buckets (the minute rows, with the totals ``taskprune`` folded old minutes into). These
    only ever grow, as Prometheus counters must."""
    rows: Any = (TaskCounter.objects.using(alias).filter(period=MINUTE)
                 .values("task_name", "state")
                 .annotate(count_=Sum("count"), runtime_count_=Sum("runtime_count"),
                           runtime_sum_=Sum("runtime_sum"),
                           **{f"{name}_": Sum(name) for name in BUCKET_FIELDS})
                 .order_by("task_name", "state"))
    return [{"task_name": row["task_name"], "state": row["state"],
             "count": int(row["count_"] or 0),
             "runtime_count": int(row["runtime_count_"] or 0),
             "runtime_sum": float(row["runtime_sum_"] or 0.0),
             "buckets": [int(row[f"{name}_"] or 0) for name in BUCKET_FIELDS]}
            for row in rows]
