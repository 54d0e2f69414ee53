"""The database broker with database results on PostgreSQL: a batch's ack, outcomes and
counts are one statement outside any transaction, or, when a lease moved on or a row is
missing, nothing of it, and then the batch is written as before (ack first, in a
transaction). Other databases always take the transaction."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import connection

from django_tasks import states
from django_tasks.conf import get_broker, get_result_store
from django_tasks.models import QueuedMessage, TaskCounter, TaskResult
from django_tasks.publishing import publish
from django_tasks.task import Task, build_message
from django_tasks.worker.consumer import Consumer

pytestmark = [pytest.mark.django_db(transaction=True),
              pytest.mark.usefixtures("database_tasks")]
ON_POSTGRES = connection.vendor == "postgresql"


@pytest.fixture
def double(define: Callable[..., Any]) -> Task[Any, Any]:
    return define(name="unit.alone.double")(lambda x: x * 2)


@pytest.fixture
def statements() -> Iterator[list[tuple[str, bool]]]:
    """Each statement run, with whether it ran inside a transaction."""
    seen: list[tuple[str, bool]] = []

    def watch(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        seen.append((sql.split(" ")[0], connection.in_atomic_block))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(watch):
        yield seen


def consumer() -> Consumer:
    return Consumer(queues=["default"], owner="test/1", hostname="test@host", prefetch=16,
                    lease=30, stop=threading.Event())


def counted() -> int:
    return sum(TaskCounter.objects.filter(period=1).values_list("count", flat=True))


def test_a_batch_is_acked_stored_and_counted_by_one_statement(
        double: Task[Any, Any], statements: list[tuple[str, bool]]) -> None:
    ids = [publish(build_message(double.name, (i,), {})).id for i in range(3)]
    deliveries = get_broker().fetch(["default"], "test/1", 16, 30)
    statements.clear()
    consumer().process(deliveries)
    store = get_result_store()
    assert store is not None
    assert [store.get(i).result for i in ids] == [0, 2, 4]  # type: ignore[union-attr]
    assert not QueuedMessage.objects.exists() and counted() == 3
    writes = [s for s in statements if s[0] != "SELECT"]  # the look for final outcomes
    if ON_POSTGRES:
        assert writes == [("WITH", False)]
    else:  # the ack, then the outcomes and counts, in one transaction
        assert next(s for s in writes if s[0] not in ("BEGIN", "SELECT")) == ("DELETE", True)
        assert all(inside for what, inside in writes if what != "BEGIN"), writes


def test_a_lease_that_moved_on_undoes_the_statement_and_the_rest_is_written_as_before(
        double: Task[Any, Any], statements: list[tuple[str, bool]],
        caplog: pytest.LogCaptureFixture) -> None:
    kept, lost = (publish(build_message(double.name, (i,), {})).id for i in (1, 2))
    deliveries = get_broker().fetch(["default"], "test/1", 16, 30)
    row = QueuedMessage.objects.get(id=deliveries[1].tag)
    QueuedMessage.objects.filter(id=row.id).update(lease_token=1, lease_owner="other/1")
    statements.clear()
    consumer().process(deliveries)
    assert TaskResult.objects.get(task_id=kept).state == states.SUCCESS
    assert TaskResult.objects.get(task_id=lost).state == states.PENDING  # the other's now
    assert list(QueuedMessage.objects.values_list("lease_owner", flat=True)) == ["other/1"]
    assert counted() == 1
    assert "lease on it is no longer current" in caplog.text
    writes = [s for s in statements if s[0] != "SELECT"]
    if ON_POSTGRES:
        assert writes[0] == ("WITH", False) and all(inside for _, inside in writes[1:])
