"""Per-minute counters of task runs: written by workers with their outcomes, read by the
dashboard and the Prometheus view, folded by ``taskprune``.

A batch of outcomes becomes one row per (minute, task name, state) it touches, and one per
(hour, task name, state) with the same runs (``period`` 60: the last day's tables read 24 of
those per task name instead of 1,440). Both go in one multi-row upsert (``INSERT … ON
CONFLICT DO UPDATE``, or ``ON DUPLICATE KEY UPDATE`` on MySQL/MariaDB) in the transaction
that stores the outcomes, in key order, so two workers adding to the same rows lock them in
the same order.

Runtimes (``date_done - started_at``) are kept as a sum, a count, a maximum (with the id of
the slowest run) and a histogram of fixed log buckets (``models.counters.BUCKETS``), from
which percentiles are estimated: within a factor of two, usually much closer (see
``percentile``).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import connections, transaction

from ..models import TaskCounter
from ..models.counters import BUCKET_FIELDS, BUCKETS, HOUR, MINUTE
from ..result import TaskOutcome

#: The minute of the rows that keep the totals of pruned minutes.
TOTALS_MINUTE = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
#: Counters are kept at least this long, however short ``TASKS_RESULT_EXPIRES`` is: the
#: dashboard shows the last day.
MIN_KEEP = dt.timedelta(days=1)
_ADDED = ("count", "runtime_count", "runtime_sum", *BUCKET_FIELDS)


#: The upper edge of the first histogram bucket, in seconds; each next one doubles it.
BASE = 0.0001


def bucket(seconds: float) -> int:
    """The histogram bucket of a runtime: 0 under 0.1 ms, then one per doubling."""
    units = seconds / BASE
    if not units >= 1.0:  # also NaN and negative clock steps
        return 0
    return min(BUCKETS - 1, int(math.log2(units)) + 1)


def upper_bound(index: int) -> float:
    """The upper edge of bucket ``index``, in seconds (``inf`` for the last one)."""
    return math.inf if index >= BUCKETS - 1 else BASE * 2.0 ** index


def percentile(buckets: Sequence[int], q: float, maximum: float | None = None) -> float | None:
    """Estimate the ``q`` quantile (0..1) of the runtimes counted in ``buckets``, in seconds.

    The rank is found in its bucket and placed inside it on a log scale (linearly in the
    first bucket, 0 to 0.1 ms); the result never exceeds ``maximum``, the largest runtime seen.
    """
    total = sum(buckets)
    if total <= 0:
        return None
    rank = q * total
    seen = 0
    for index, n in enumerate(buckets):
        if n and seen + n >= rank:
            share = (rank - seen) / n
            if index == 0:
                value = share * upper_bound(0)
            elif index == BUCKETS - 1:
                value = upper_bound(index - 1) * (1 + share) if maximum is None else maximum
            else:
                low = upper_bound(index - 1)
                value = low * 2.0 ** share
            return min(value, maximum) if maximum else value
        seen += n
    return maximum


@dataclass(slots=True)
class Tally:
    """What one batch adds to one counter row."""

    count: int = 0
    runtime_count: int = 0
    runtime_sum: float = 0.0
    runtime_max: float = 0.0
    slowest_task_id: str = ""
    last_task_id: str = ""
    buckets: list[int] = field(default_factory=lambda: [0] * BUCKETS)

    def add_runtime(self, seconds: float, task_id: str, runs: int = 1) -> None:
        self.runtime_count += runs
        self.runtime_sum += seconds
        if seconds > self.runtime_max or not self.slowest_task_id:
            self.runtime_max, self.slowest_task_id = max(seconds, self.runtime_max), task_id


Key = tuple[int, dt.datetime, str, str]


def tally(outcomes: Iterable[TaskOutcome], now: dt.datetime) -> dict[Key, Tally]:
    """The outcomes summed by (period, minute or hour of ``date_done``, task name, state)."""
    rows: dict[Key, Tally] = {}
    for o in outcomes:
        done = o.date_done or now
        minute = done.astimezone(dt.UTC).replace(second=0, microsecond=0)
        seconds = None
        if o.started_at is not None and o.date_done is not None:
            seconds = max((o.date_done - o.started_at).total_seconds(), 0.0)
        for key in ((MINUTE, minute, o.task_name or "", o.state),
                    (HOUR, minute.replace(minute=0), o.task_name or "", o.state)):
            row = rows.setdefault(key, Tally())
            row.count += 1
            row.last_task_id = o.task_id
            if seconds is not None:
                row.add_runtime(seconds, o.task_id)
                row.buckets[bucket(seconds)] += 1
    return rows


def merge(into: dict[Key, Tally], more: Mapping[Key, Tally]) -> None:
    """Add the runs of ``more`` to ``into``, ``more`` being the later ones."""
    for key, t in more.items():
        row = into.setdefault(key, Tally())
        row.count += t.count
        row.runtime_count += t.runtime_count
        row.runtime_sum += t.runtime_sum
        if t.slowest_task_id and (t.runtime_max > row.runtime_max or not row.slowest_task_id):
            row.runtime_max, row.slowest_task_id = t.runtime_max, t.slowest_task_id
        row.last_task_id = t.last_task_id or row.last_task_id
        row.buckets = [a + b for a, b in zip(row.buckets, t.buckets, strict=True)]


#: A worker thread writes the runs of its small batches to the counters at most this often
#: while busy, and within a wait slice of going idle (``Kept``).
WRITE_EVERY = 1.0


class Kept:
    """The runs a worker thread has settled but not yet added to the counters.

    The upsert of counter rows every worker adds to was the costliest statement of a small
    batch (0.5 ms on the server, of the rows' 38 columns and their dead versions), and a
    worker answering one reader at a time settles a batch per task: so such batches' runs
    are kept here, added once the batch is on disk, and written by the next flush at least
    ``WRITE_EVERY`` seconds after the first of them, or when the worker idles or stops. A
    worker killed at once loses the counts it kept (at most about a second of runs): counts
    are statistics, outcomes are not, and those are on disk before any ack."""

    def __init__(self) -> None:
        self.rows: dict[Key, Tally] = {}
        self.since: float | None = None

    def add(self, rows: Mapping[Key, Tally]) -> None:
        merge(self.rows, rows)
        if self.since is None and rows:
            self.since = time.monotonic()

    def due(self) -> bool:
        return self.since is not None and time.monotonic() - self.since >= WRITE_EVERY

    def with_rows(self, rows: Mapping[Key, Tally] | None) -> dict[Key, Tally]:
        """The kept rows and ``rows`` together, leaving the kept ones as they are."""
        both: dict[Key, Tally] = {}
        merge(both, self.rows)
        merge(both, rows or {})
        return both

    def clear(self) -> None:
        self.rows, self.since = {}, None


def record(alias: str, outcomes: Sequence[TaskOutcome], now: dt.datetime) -> None:
    """Add ``outcomes`` to the counters: one upsert statement for the whole batch."""
    rows = tally(outcomes, now)
    if rows:
        upsert(alias, rows)


_COLUMNS = ("period", "minute", "task_name", "state", "count", "runtime_count", "runtime_sum",
            "runtime_max", "slowest_task_id", "last_task_id", *BUCKET_FIELDS)
#: PostgreSQL's type of each column, for the rows given as JSON.
_TYPES = ("smallint", "timestamptz", "text", "text", "bigint", "bigint", "float8", "float8",
          "text", "text", *["bigint"] * len(BUCKET_FIELDS))


#: The PostgreSQL upsert's text, by database alias (built once: it names 38 columns).
_JSON_UPSERTS: dict[str, str] = {}


def _row(key: Key, t: Tally) -> list[Any]:
    period, minute, name, state = key
    return [period, minute, name[:255], state[:16], t.count, t.runtime_count, t.runtime_sum,
            t.runtime_max, t.slowest_task_id[:255], t.last_task_id[:255], *t.buckets]


def json_upsert(alias: str, rows: Mapping[Key, Tally]) -> tuple[str, str]:
    """PostgreSQL: the upsert of ``rows`` as a statement and its one parameter (the rows as
    a JSON array, in one lock order for every worker)."""
    sql = _JSON_UPSERTS.get(alias) or _JSON_UPSERTS.setdefault(
        alias, _upsert_sql(connections[alias], ""))
    return sql, json.dumps([[*row[:1], row[1].isoformat(), *row[2:]]
                            for row in (_row(key, rows[key]) for key in sorted(rows))])


def upsert(alias: str, rows: Mapping[Key, Tally]) -> None:
    connection = connections[alias]
    keys = sorted(rows)  # one lock order for every worker
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            sql, param = json_upsert(alias, rows)
            cursor.execute(sql, [param])
            return
        adapt = connection.ops.adapt_datetimefield_value
        params: list[Any] = []
        for key in keys:
            row = _row(key, rows[key])
            row[1] = adapt(row[1])
            params += row
        cursor.execute(_upsert_sql(connection, ", ".join(
            ["(" + ", ".join(["%s"] * len(_COLUMNS)) + ")"] * len(keys))), params)


def _upsert_sql(connection: Any, values: str) -> str:
    """The upsert of counter rows given as ``VALUES`` (``values``), or on PostgreSQL as one
    JSON array of rows (``values`` empty): one statement text for any number of rows, so
    the driver does not parse a long statement with hundreds of parameters each time
    (about 0.3 ms a batch)."""
    quote = connection.ops.quote_name
    table = quote(TaskCounter._meta.db_table)
    columns = ", ".join(quote(c) for c in _COLUMNS)
    if connection.vendor == "postgresql":
        picked = ", ".join(f"(e.r->>{i})::{kind}" for i, kind in enumerate(_TYPES))
        sql = (f"INSERT INTO {table} ({columns}) SELECT {picked} FROM "
               "jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS e(r, n) ORDER BY e.n ")
    else:
        sql = f"INSERT INTO {table} ({columns}) VALUES {values} "
    if connection.vendor == "mysql":
        def new(c: str) -> str:
            return f"VALUES({quote(c)})"
        # Assignments apply left to right here: the slowest id before the maximum it reads.
        sets = [f"{quote('slowest_task_id')} = IF({new('runtime_max')} > "
                f"{quote('runtime_max')}, {new('slowest_task_id')}, {quote('slowest_task_id')})",
                f"{quote('runtime_max')} = GREATEST({quote('runtime_max')}, "
                f"{new('runtime_max')})"]
        sql += "ON DUPLICATE KEY UPDATE "
    else:
        def new(c: str) -> str:
            return f"excluded.{quote(c)}"
        old = f"{table}.{quote('runtime_max')}"
        sets = [f"{quote('slowest_task_id')} = CASE WHEN {new('runtime_max')} > {old} "
                f"THEN {new('slowest_task_id')} ELSE {table}.{quote('slowest_task_id')} END",
                f"{quote('runtime_max')} = CASE WHEN {new('runtime_max')} > {old} "
                f"THEN {new('runtime_max')} ELSE {old} END"]
        sql += (f"ON CONFLICT ({quote('period')}, {quote('minute')}, {quote('task_name')}, "
                f"{quote('state')}) DO UPDATE SET ")
    sets += [f"{quote(c)} = {table}.{quote(c)} + {new(c)}" if connection.vendor != "mysql"
             else f"{quote(c)} = {quote(c)} + {new(c)}" for c in _ADDED]
    sets.append(f"{quote('last_task_id')} = {new('last_task_id')}")
    return sql + ", ".join(sets)


def fold_before(alias: str, before: dt.datetime, batch_size: int) -> int:
    """Fold up to ``batch_size`` counter rows of minutes before ``before`` into the totals
    rows (``TOTALS_MINUTE``), in one transaction; return how many rows went. Hour rows
    before it are deleted (their runs are in the minute rows)."""
    rows = TaskCounter.objects.using(alias)
    with transaction.atomic(using=alias):
        old = list(rows.select_for_update().filter(minute__lt=before, minute__gt=TOTALS_MINUTE)
                   .order_by("id")[:batch_size])
        if not old:
            return 0
        totals: dict[Key, Tally] = {}
        for r in old:
            if r.period == MINUTE:
                merge(totals, {(MINUTE, TOTALS_MINUTE, r.task_name, r.state): Tally(
                    r.count, r.runtime_count, r.runtime_sum, r.runtime_max,
                    r.slowest_task_id, r.last_task_id,
                    [getattr(r, name) for name in BUCKET_FIELDS])})
        rows.filter(id__in=[r.id for r in old]).delete()
        if totals:
            upsert(alias, totals)
    return len(old)

