"""A batch of one (a worker answering one reader at a time): its outcome is stored by a
statement of plain parameters on PostgreSQL (``pg_outcomes.one_update``), not the JSON
array's, with the same promises: the row is written only when it is there and not final,
its reader is woken at the commit, and with an ack or the counters' upsert beside it, all or
nothing. A single PENDING row written lazily (a broker outside the database) is one plain
``INSERT`` too. On other databases the same calls take their usual way; the outcomes are
checked there as well."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import connection, connections

from django_tasks import states
from django_tasks.conf import get_broker
from django_tasks.durability import LAZY
from django_tasks.message import Message
from django_tasks.models import QueuedMessage, TaskCounter, TaskResult
from django_tasks.publishing import publish
from django_tasks.result import TaskOutcome
from django_tasks.results.database import DatabaseResultStore
from django_tasks.task import Task, build_message
from django_tasks.worker import consumer as consumer_module
from django_tasks.worker.consumer import Consumer

pytestmark = pytest.mark.django_db(transaction=True)
ON_POSTGRES = connection.vendor == "postgresql"
NEVER = 30.0


@pytest.fixture
def statements() -> Iterator[list[str]]:
    seen: list[str] = []

    def watch(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        seen.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(watch):
        yield seen


@pytest.fixture
def double(define: Callable[..., Any]) -> Task[Any, Any]:
    return define(name="unit.one.double")(lambda x: x * 2)


def outcome(task_id: str, state: str = states.SUCCESS) -> TaskOutcome:
    now = dt.datetime.now(dt.UTC)
    return TaskOutcome(task_id=task_id, task_name="unit.one.t", state=state, result=[1, "x"],
                       traceback="tb" if state == states.FAILURE else None, worker="w@h",
                       attempts=2, retries=1, started_at=now, date_done=now)


def counted() -> int:
    return sum(TaskCounter.objects.filter(period=1).values_list("count", flat=True))


def writes(seen: list[str]) -> list[str]:
    return [sql for sql in seen if sql.startswith("WITH")]


def test_one_outcome_is_written_by_a_statement_of_plain_parameters(
        statements: list[str]) -> None:
    store = DatabaseResultStore("django://")
    store.create_pending([Message(id="one", task="unit.one.t")])
    statements.clear()
    assert store.store_alone([outcome("one")], [], lazy=True) is ON_POSTGRES
    if not ON_POSTGRES:  # no one statement there: the caller writes it the usual way
        store.store_outcomes([outcome("one")])
    row = TaskResult.objects.get(task_id="one")
    assert (row.state, row.worker, row.attempts, row.retries) == (states.SUCCESS, "w@h", 2, 1)
    assert store.get("one").result == [1, "x"]  # type: ignore[union-attr]
    assert row.started_at is not None and row.date_done is not None
    if ON_POSTGRES:
        [sql] = writes(statements)
        assert "jsonb_array_elements" not in sql and LAZY in sql and "pg_notify" in sql


@pytest.mark.parametrize("state", [states.SUCCESS, states.FAILURE, states.RETRY])
def test_a_final_outcome_wakes_its_reader_and_a_retry_does_not(state: str) -> None:
    store = DatabaseResultStore("django://")
    store.create_pending([Message(id="woken", task="unit.one.t")])
    wrote: list[bool] = []

    def write() -> None:
        try:
            wrote.append(DatabaseResultStore("django://").store_alone([outcome("woken", state)],
                                                                      [], lazy=True))
        finally:
            connections.close_all()

    try:
        assert store.wait(NEVER, ["woken"]) is (True if ON_POSTGRES else None)
        store.get("woken")  # the LISTEN rides on it
        thread = threading.Thread(target=write)
        thread.start()
        thread.join()
        assert wrote == [ON_POSTGRES]
        if ON_POSTGRES:
            assert store.wait(0.5 if state == states.RETRY else NEVER, ["woken"]) is (
                state != states.RETRY)
            assert TaskResult.objects.get(task_id="woken").state == state
    finally:
        store.stop_waiting()


@pytest.mark.parametrize("counts", [False, True])
def test_a_missing_or_final_row_is_not_written_nor_counted(counts: bool) -> None:
    """Nothing is written: the caller takes the longer way. With the counters' upsert in the
    statement (a batch stored without waiting to count), the statement is undone."""
    store = DatabaseResultStore("django://")
    store.create_pending([Message(id="final", task="unit.one.t")])
    TaskResult.objects.filter(task_id="final").update(state=states.REVOKED)
    for task_id in ("missing", "final"):
        assert store.store_alone([outcome(task_id)], [outcome(task_id)] if counts else [],
                                 lazy=not counts) is False
    assert not TaskResult.objects.filter(task_id="missing").exists()
    assert TaskResult.objects.get(task_id="final").state == states.REVOKED
    assert counted() == 0


def test_a_single_message_whose_row_went_final_is_acked_and_left_as_it_was(
        double: Task[Any, Any], statements: list[str], database_tasks: None) -> None:
    """The database broker: the one statement (ack and outcome) is undone when the row is
    final (revoked while it ran), and the batch is written the longer way: acked, its
    outcome refused."""
    task_id = publish(build_message(double.name, (1,), {})).id
    [delivery] = get_broker().fetch(["default"], "test/1", 16, 30)
    worker = Consumer(queues=["default"], owner="test/1", hostname="test@host", prefetch=16,
                      lease=30, stop=threading.Event())
    run = consumer_module.execute

    def revoke_while_running(item: Any, *args: Any) -> Any:
        TaskResult.objects.filter(task_id=task_id).update(state=states.REVOKED)
        return run(item, *args)

    statements.clear()
    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(consumer_module, "execute", revoke_while_running)
        worker.process([delivery])
    assert not QueuedMessage.objects.exists()
    assert TaskResult.objects.get(task_id=task_id).state == states.REVOKED
    if ON_POSTGRES:
        first = writes(statements)[0]
        assert "jsonb_array_elements" not in first and "DELETE" in first


def test_a_single_lazy_pending_row_is_one_plain_insert(statements: list[str]) -> None:
    store = DatabaseResultStore("django://")
    store.create_pending([Message(id="lazy", task="unit.one.t", args=(1,), queue="q",
                                  priority=3)], durable=False)
    row = TaskResult.objects.get(task_id="lazy")
    assert (row.state, row.queue, row.priority, row.root_id) == (states.PENDING, "q", 3, "lazy")
    [sql] = [s for s in statements if s.startswith("INSERT")]
    assert "jsonb_array_elements" not in sql
    assert (LAZY in sql) is ON_POSTGRES
