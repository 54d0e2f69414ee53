"""The per-minute counters workers write with their outcomes (``results/counters.py``)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.db import connection

from django_tasks import states
from django_tasks.message import Message
from django_tasks.models import TaskCounter, TaskResult
from django_tasks.models.counters import BUCKET_FIELDS
from django_tasks.result import TaskOutcome
from django_tasks.results import counters
from django_tasks.results.database import DatabaseResultStore
from django_tasks.results.prune import prune_expired

NOW = dt.datetime(2026, 11, 28, 14, 30, 20, tzinfo=dt.UTC)


def outcome(task_id: str, name: str = "app.add", state: str = states.SUCCESS,
            runtime: float | None = 0.01, done: dt.datetime = NOW) -> TaskOutcome:
    started = None if runtime is None else done - dt.timedelta(seconds=runtime)
    return TaskOutcome(task_id=task_id, task_name=name, state=state, started_at=started,
                       date_done=done)


def test_buckets_double_from_a_tenth_of_a_millisecond() -> None:
    assert counters.bucket(0.0) == 0
    assert counters.bucket(-1.0) == 0
    assert counters.bucket(0.00009) == 0
    assert counters.bucket(0.0001) == 1
    assert counters.bucket(0.0003) == 2  # 0.2 .. 0.4 ms
    assert counters.bucket(1.0) == 14  # 819.2 ms .. 1638.4 ms
    assert counters.upper_bound(14) == pytest.approx(1.6384)
    assert counters.bucket(10 ** 6) == len(BUCKET_FIELDS) - 1


def test_percentiles_are_estimated_within_their_bucket() -> None:
    buckets = [0] * len(BUCKET_FIELDS)
    buckets[counters.bucket(0.1)] = 90  # 51.2 .. 102.4 ms
    buckets[counters.bucket(2.0)] = 10  # 1.6384 .. 3.2768 s
    p50 = counters.percentile(buckets, 0.5)
    assert p50 is not None and 0.0512 <= p50 <= 0.1024
    p95 = counters.percentile(buckets, 0.95, maximum=2.0)
    assert p95 is not None and 1.6384 <= p95 <= 2.0
    assert counters.percentile([0] * len(BUCKET_FIELDS), 0.5) is None


@pytest.mark.django_db
def test_one_row_per_minute_name_and_state_added_up_across_batches(
        django_assert_num_queries: object) -> None:
    store = DatabaseResultStore()
    batch = [outcome(f"a{i}", runtime=0.01 * (i + 1)) for i in range(10)]
    batch += [outcome("f1", state=states.FAILURE), outcome("r1", runtime=None,
                                                          state=states.REVOKED)]
    batch.append(outcome("late", done=NOW + dt.timedelta(minutes=1)))
    with django_assert_num_queries(1):  # type: ignore[operator]
        store.count_outcomes(batch)
    store.count_outcomes([outcome("slow", runtime=5.0), outcome("b2", name="app.other")])
    rows = {(r.minute.minute, r.task_name, r.state): r
            for r in TaskCounter.objects.filter(period=1)}
    hours = {(r.minute.minute, r.task_name, r.state): r.count
             for r in TaskCounter.objects.filter(period=60)}
    assert hours == {(0, "app.add", "SUCCESS"): 12, (0, "app.add", "FAILURE"): 1,
                     (0, "app.add", "REVOKED"): 1, (0, "app.other", "SUCCESS"): 1}
    assert set(rows) == {(30, "app.add", "SUCCESS"), (30, "app.add", "FAILURE"),
                         (30, "app.add", "REVOKED"), (31, "app.add", "SUCCESS"),
                         (30, "app.other", "SUCCESS")}
    success = rows[(30, "app.add", "SUCCESS")]
    assert success.count == 11 and success.runtime_count == 11
    assert success.runtime_sum == pytest.approx(0.55 + 5.0)
    assert success.runtime_max == pytest.approx(5.0) and success.slowest_task_id == "slow"
    assert success.last_task_id == "slow"
    assert sum(getattr(success, f) for f in BUCKET_FIELDS) == 11
    revoked = rows[(30, "app.add", "REVOKED")]
    assert revoked.count == 1 and revoked.runtime_count == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("row", ["there", "missing", "final"])
def test_outcomes_and_their_count_are_written_all_or_nothing_outside_a_transaction(
        row: str) -> None:
    """On PostgreSQL a batch whose rows all wait for their outcome is one statement outside
    any transaction; a missing or final row makes it undo itself, and the batch is written
    again in a transaction that inserts the missing row. Every run is counted once."""
    store = DatabaseResultStore()
    ids = ["s1", "s2", "s3"]
    store.create_pending([Message(id=i, task="app.add") for i in ids])
    if row == "missing":
        TaskResult.objects.filter(task_id="s2").delete()
    elif row == "final":
        store.revoke("s2")
    in_transaction: list[bool] = []

    def watch(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        in_transaction.append(connection.in_atomic_block)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(watch):
        store.store_and_count([outcome(i) for i in ids], [outcome(i) for i in ids])
    assert dict(TaskResult.objects.values_list("task_id", "state")) == {
        "s1": states.SUCCESS, "s2": states.REVOKED if row == "final" else states.SUCCESS,
        "s3": states.SUCCESS}
    assert [(c.period, c.count) for c in TaskCounter.objects.order_by("period")] == [
        (1, 3), (60, 3)]
    if connection.vendor == "postgresql":
        assert in_transaction[0] is False
        if row == "there":
            assert len(in_transaction) == 1
        else:  # then the update, the missing row's insert, the notification
            assert in_transaction[1:] == [True, True, True]


@pytest.mark.django_db
def test_taskprune_folds_old_minutes_into_totals_and_keeps_a_day() -> None:
    store = DatabaseResultStore()
    old = NOW - dt.timedelta(days=3)
    store.count_outcomes([outcome("o1", done=old), outcome("o2", done=old + dt.timedelta(
        minutes=5), runtime=3.0), outcome("o3", state=states.FAILURE, done=old)])
    store.count_outcomes([outcome("recent", done=NOW - dt.timedelta(hours=20))])
    report = prune_expired(older_than=dt.timedelta(hours=1), store=store, now=NOW)
    assert report.counters == 3 + 2  # three minute rows, two hour rows
    minutes = sorted((r.period, r.minute, r.state, r.count) for r in TaskCounter.objects.all())
    recent = NOW.replace(second=0) - dt.timedelta(hours=20)
    assert minutes == [(1, counters.TOTALS_MINUTE, "FAILURE", 1),
                       (1, counters.TOTALS_MINUTE, "SUCCESS", 2),
                       (1, recent, "SUCCESS", 1), (60, recent.replace(minute=0), "SUCCESS", 1)]
    totals = TaskCounter.objects.get(minute=counters.TOTALS_MINUTE, state="SUCCESS")
    assert totals.runtime_max == pytest.approx(3.0) and totals.slowest_task_id == "o2"
    # Folding again adds to the totals: they only grow.
    store.count_outcomes([outcome("o4", done=old)])
    prune_expired(older_than=dt.timedelta(hours=1), store=store, now=NOW)
    totals.refresh_from_db()
    assert totals.count == 3


@pytest.mark.django_db
def test_taskprune_says_how_many_counter_rows_it_folded() -> None:
    from io import StringIO

    from django.core.management import call_command

    DatabaseResultStore().count_outcomes([outcome("o1", done=dt.datetime.now(dt.UTC)
                                                  - dt.timedelta(days=2))])
    out = StringIO()
    call_command("taskprune", stdout=out)
    assert "Folded 2 dashboard counter rows into totals." in out.getvalue()
