"""Workflows through the database result store, with the database broker (outcome, count,
follow-ups and ack in one transaction) and with a broker outside the database (the memory
broker: outcome, count and follow-ups in one transaction, then the ack). A worker that
dies between the two sends each follow-up once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from django_tasks import GroupResult, chain, chord, group, shared_task, states
from django_tasks.conf import get_broker, reset_cache
from django_tasks.message import Message
from django_tasks.models import TaskGroup, TaskResult
from django_tasks.worker.consumer import Consumer

pytestmark = pytest.mark.django_db(transaction=True)


@shared_task(name="unit.canvasdb.add")
def add(x: int, y: int) -> int:
    return x + y


@shared_task(name="unit.canvasdb.tsum")
def tsum(values: list[int]) -> int:
    return sum(values)


@shared_task(name="unit.canvasdb.boom")
def boom(*args: Any) -> None:
    raise ValueError("boom")


@pytest.fixture(params=["django://", "memory://"])
def tasks_on(request: pytest.FixtureRequest) -> Iterator[str]:
    """The database store, with the database broker or a broker outside the database."""
    with override_settings(TASKS_BROKER_URL=request.param, TASKS_RESULT_BACKEND="django://"):
        reset_cache()
        yield request.param
    reset_cache()


def consumer() -> Consumer:
    return Consumer(queues=["default"], owner="test/1", hostname="test@host", prefetch=100,
                    lease=30, stop=threading.Event())


def drain(rounds: int = 100) -> int:
    c, ran = consumer(), 0
    for _ in range(rounds):
        batch = get_broker().fetch(["default"], c.owner, 100, 30)
        if not batch:
            return ran
        ran += len(batch)
        c.process(batch)
    return ran


@pytest.mark.usefixtures("tasks_on")
def test_link_chain_and_ids_on_the_rows() -> None:
    linked = add.apply_async((2, 2), link=add.s(8))
    flow = chain(add.s(1, 1), *[add.s(1) for _ in range(9)]).apply_async()
    drain()
    [child] = linked.children
    assert child.get(timeout=1) == 12 and child.parent == linked
    assert flow.get(timeout=1) == 11
    row = TaskResult.objects.get(task_id=flow.id)
    assert row.parent_id == flow.parent.id  # type: ignore[union-attr]
    assert TaskResult.objects.filter(root_id=row.root_id).count() == 10


@pytest.mark.usefixtures("tasks_on")
def test_a_group_saved_in_the_database() -> None:
    result = group(add.s(i, i) for i in range(30)).apply_async()
    result.save()
    assert TaskResult.objects.filter(group_id=result.id).count() == 30
    drain()
    again = GroupResult.restore(result.id)
    assert again is not None and again.get(timeout=1) == [i + i for i in range(30)]
    assert again.completed_count() == 30


def _chord_queries(size: int) -> tuple[int, int]:
    result = chord([add.s(i, i) for i in range(size)], tsum.s()).apply_async()
    with CaptureQueriesContext(connection) as queries:
        ran = drain()
    assert result.get(timeout=1) == sum(i + i for i in range(size))
    counter = [q["sql"] for q in queries.captured_queries
               if TaskGroup._meta.db_table in q["sql"]]
    return ran, len(counter)


@pytest.mark.usefixtures("tasks_on")
def test_a_chord_is_one_counter_row_updated_once_per_member() -> None:
    ran, counter = _chord_queries(40)
    assert ran == 41  # its members and its callback: no polling task
    row = TaskGroup.objects.get()
    assert (row.size, row.done, row.state) == (40, 40, states.SUCCESS)
    # One UPDATE per member (two where the database cannot return what it updated), and
    # two more when the last one completes the count.
    assert counter <= (40 if connection.vendor in ("postgresql", "sqlite") else 80) + 2


@pytest.mark.usefixtures("tasks_on")
def test_a_failed_member_fails_the_chord_at_once() -> None:
    result = chord([add.s(1, 1), boom.s(), add.s(2, 2)], tsum.s()).apply_async()
    drain()
    assert result.state == states.FAILURE
    failed = result.parent.results[1].id  # type: ignore[union-attr]
    assert failed in str(result.result)
    row = TaskGroup.objects.get()
    assert (row.state, row.failed_task_id) == (states.FAILURE, failed)
    assert not TaskResult.objects.filter(task_name=tsum.name, state=states.SUCCESS).exists()


class Died(BaseException):
    """The worker's process ends here (a BaseException: nothing of the worker catches it)."""


@pytest.mark.usefixtures("tasks_on")
def test_a_worker_dying_before_the_ack_sends_each_follow_up_once(
        monkeypatch: pytest.MonkeyPatch, clock: Any) -> None:
    """Killed between the outcome and the ack: on the database broker the whole
    settlement rolls back (the task runs again, its follow-ups are sent then); on another
    broker the outcome and the follow-ups were committed together, and the message, found
    final when it comes back, is acked without running. Either way: once."""
    parent = add.apply_async((2, 2), link=add.s(8))
    flow = chord([add.s(1, 1), add.s(2, 2)], tsum.s()).apply_async()
    broker = type(get_broker())
    real_ack = broker.ack
    monkeypatch.setattr(broker, "ack", lambda self, deliveries: (_ for _ in ()).throw(Died()))
    c = consumer()
    with pytest.raises(Died):
        c.process(get_broker().fetch(["default"], c.owner, 100, 30))
    monkeypatch.setattr(broker, "ack", real_ack)
    clock.advance(60)  # the dead worker's leases run out; the messages come back
    drain()
    assert parent.get(timeout=1) == 4 and flow.get(timeout=1) == 6
    assert [r.get(timeout=1) for r in parent.children] == [12]
    assert TaskResult.objects.filter(task_name=tsum.name).count() == 1
    assert TaskGroup.objects.get().done == 2
    # The task and its callback, the chord's two members and its callback: once each.
    assert TaskResult.objects.filter(state=states.SUCCESS).count() == 5
    assert TaskResult.objects.count() == 5


def test_the_messages_carry_celerys_embed() -> None:
    with override_settings(TASKS_BROKER_URL="memory://", TASKS_RESULT_BACKEND="django://"):
        reset_cache()
        chord([add.s(1, 1)], tsum.s()).apply_async()
        [delivery] = get_broker().fetch(["default"], "x", 10, 30)
    reset_cache()
    message = Message.decode(delivery.body)
    embed = __import__("json").loads(delivery.body)["body"][2]
    assert embed["chord"]["task"] == tsum.name and message.group is not None
    assert set(embed) == {"callbacks", "errbacks", "chain", "chord"}


def test_the_task_queue_fixture_runs_a_workflows_follow_ups(task_queue: Any) -> None:
    flow = (add.s(1, 1) | group(add.s(1), add.s(2)) | tsum.s()).apply_async()
    ran = task_queue.run_pending()
    assert len(ran) == 4 and flow.get(timeout=1) == 7


def test_an_ack_tried_again_does_not_send_the_follow_ups_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A broker outside the database: the outcome, the chord's count and the follow-ups
    committed, then the ack failed for a passing reason and is tried again."""
    from django.db import OperationalError

    with override_settings(TASKS_BROKER_URL="memory://", TASKS_RESULT_BACKEND="django://"):
        reset_cache()
        parent = add.apply_async((2, 2), link=add.s(8))
        flow = chord([add.s(1, 1), add.s(2, 2)], tsum.s()).apply_async()
        broker = type(get_broker())
        real_ack, failures = broker.ack, [1]

        def ack_once_failing(self: Any, deliveries: Any) -> Any:
            if failures:
                failures.pop()
                raise OperationalError("the broker went away for a moment")
            return real_ack(self, deliveries)

        monkeypatch.setattr(broker, "ack", ack_once_failing)
        drain()
        assert parent.get(timeout=1) == 4 and flow.get(timeout=1) == 6
        assert [r.get(timeout=1) for r in parent.children] == [12]
        assert TaskGroup.objects.get().done == 2
        assert TaskResult.objects.count() == 5 and not failures
    reset_cache()


@pytest.mark.usefixtures("tasks_on")
def test_a_rolled_back_chord_leaves_neither_its_row_nor_its_messages() -> None:
    from django.db import transaction

    class Rollback(Exception):
        pass

    with pytest.raises(Rollback), transaction.atomic():
        chord([add.s(1, 1), add.s(2, 2)], tsum.s()).apply_async()
        group(add.s(3, 3)).apply_async()
        raise Rollback
    assert not TaskGroup.objects.exists() and not TaskResult.objects.exists()
    assert drain() == 0
    chord([add.s(1, 1)], tsum.s()).apply_async()
    assert TaskGroup.objects.count() == 1 and drain() == 2
