"""``django_tasks.testing``: the ``task_queue`` fixture runs queued tasks through the worker's
code on demand, with a clock the test moves."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.db import transaction

from django_tasks import AsyncResult, send_task, shared_task, signals, states
from django_tasks.exceptions import EncodeError
from django_tasks.testing import TaskQueue

attempts: list[int] = []


@shared_task(name="unit.testing.add")
def add(x: int, y: int) -> int:
    return x + y


@shared_task(name="unit.testing.flaky", bind=True, max_retries=3)
def flaky(self: Any) -> str:  # type: ignore[misc]
    attempts.append(self.request.retries)
    if self.request.retries == 0:
        raise self.retry(countdown=60)
    return "second time lucky"


@pytest.fixture(autouse=True)
def _fresh() -> None:
    attempts.clear()


def test_delay_queues_and_run_pending_runs_it(task_queue: TaskQueue) -> None:
    result = add.delay(2, 3)
    assert result.state == states.PENDING  # queued, not run
    task_queue.assert_enqueued(add, (2, 3))
    assert [r.id for r in task_queue.run_pending()] == [result.id]
    assert (result.state, result.get(timeout=0)) == (states.SUCCESS, 5)
    assert task_queue.queued() == []
    assert task_queue.run_pending() == []


def test_a_rolled_back_enqueue_leaves_nothing(task_queue: TaskQueue) -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        add.delay(1, 1)
        raise RuntimeError("roll back")
    task_queue.assert_not_enqueued(add)
    assert task_queue.run_pending() == []


def test_a_retry_waits_for_the_clock(task_queue: TaskQueue) -> None:
    result = flaky.delay()
    task_queue.run_pending()
    assert result.state == states.RETRY
    assert task_queue.run_pending() == []  # not due for 60 s
    task_queue.clock.advance(59)
    assert task_queue.run_pending() == []
    task_queue.clock.advance(1)
    assert [r.id for r in task_queue.run_pending()] == [result.id]
    assert result.get(timeout=0) == "second time lucky"
    assert attempts == [0, 1]
    assert (AsyncResult(result.id).retries, result.worker) == (1, "testing")


def test_countdown_and_expires_follow_the_fake_clock(task_queue: TaskQueue) -> None:
    later = add.apply_async((1, 2), countdown=30)
    stale = add.apply_async((3, 4), expires=10)
    task_queue.clock.advance(seconds=20)
    assert [r.id for r in task_queue.run_pending()] == [stale.id]
    assert stale.state == states.REVOKED  # it expired before it ran
    assert later.state == states.PENDING
    task_queue.clock.advance(minutes=1)
    task_queue.run_pending()
    assert later.get(timeout=0) == 3
    assert later.date_done == task_queue.clock.now()


def test_arguments_fail_at_delay_as_in_production(task_queue: TaskQueue) -> None:
    with pytest.raises(EncodeError):
        add.delay(object(), 1)
    with pytest.raises(TypeError, match="missing a required argument"):
        add.delay(1)
    assert task_queue.queued() == []


def test_worker_behaviour_comes_along(task_queue: TaskQueue) -> None:
    seen: list[Any] = []

    def on_success(sender: Any, result: Any, **kwargs: Any) -> None:
        seen.append(result)

    signals.task_success.connect(on_success)
    try:
        add.delay(20, 22)
        unknown = send_task("unit.testing.nowhere", args=[1])
        task_queue.run_pending()
    finally:
        signals.task_success.disconnect(on_success)
    assert seen == [42]
    assert unknown.state == states.FAILURE
    with pytest.raises(Exception, match=r"unit\.testing\.nowhere"):
        unknown.get(timeout=0)


def test_assert_enqueued_says_what_was_queued(task_queue: TaskQueue) -> None:
    add.apply_async((1, 2), queue="math")
    assert len(task_queue.assert_enqueued("unit.testing.add", kwargs={}, queue="math")) == 1
    with pytest.raises(AssertionError, match=r"(?s)found 0\. Queued:\n  unit\.testing\.add "
                                             r"args=\[1, 2\] kwargs=\{\} queue='math'"):
        task_queue.assert_enqueued(add, (9, 9))
    with pytest.raises(AssertionError, match="Expected 2 message"):
        task_queue.assert_enqueued(add, count=2)
    assert task_queue.clear() == 1


def test_run_pending_stops_at_a_limit(task_queue: TaskQueue) -> None:
    first, second = add.delay(1, 1), add.delay(2, 2)
    assert [r.id for r in task_queue.run_pending(limit=1)] == [first.id]
    assert [m.id for m in task_queue.due()] == [second.id]


@pytest.mark.django_db
def test_the_context_manager_puts_the_clock_back() -> None:
    from django_tasks import clock

    start = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    with TaskQueue(start) as queue:
        assert clock.now() == start
        queue.clock.advance(hours=1)
        assert clock.now() == start + dt.timedelta(hours=1)
    assert abs(clock.now() - dt.datetime.now(dt.UTC)) < dt.timedelta(seconds=5)
