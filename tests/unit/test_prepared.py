"""Prepared statements (``prepared.py``): on PostgreSQL ``get()``'s look, a worker's claim, a
``delay()`` outside a transaction (its message and row, or on another broker its row), and a
worker's look for final ids and its store of one outcome are prepared at their third run on
a connection and run by name after; a statement PostgreSQL no longer knows is run again
unprepared and turns preparing off; nothing is prepared inside a transaction, with the setting
off, or on other databases (those runs check that the statements work the same)."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection, transaction

from django_tasks import prepared
from django_tasks.brokers.database import DatabaseBroker
from django_tasks.message import Message
from django_tasks.results.database import DatabaseResultStore

pytestmark = pytest.mark.django_db(transaction=True)
ON_POSTGRES = connection.vendor == "postgresql"


@pytest.fixture(autouse=True)
def fresh_state() -> Iterator[None]:
    """Each test starts with nothing prepared and preparing on."""
    def forget() -> None:
        prepared._names.clear()
        prepared._runs.clear()
        prepared._refused.clear()
        prepared._off[0] = False
        if ON_POSTGRES:
            with connection.cursor() as cursor:
                cursor.execute("DEALLOCATE ALL")
    forget()
    yield
    forget()


@pytest.fixture
def store() -> DatabaseResultStore:
    store = DatabaseResultStore("django://")
    store.create_pending([Message(id="p-1", task="unit.prepared.t", args=(1,))])
    return store


def server_statements() -> list[tuple[str, int, int]]:
    """This connection's prepared statements: name, runs with a plan made without the
    values, runs with one made for them."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT name, generic_plans, custom_plans FROM pg_prepared_statements")
        return list(cursor.fetchall())


def test_the_look_is_prepared_at_its_third_run_and_then_run_by_name(
        store: DatabaseResultStore) -> None:
    for run in range(1, 10):
        meta = store.get("p-1")
        assert meta is not None and (meta.state, meta.task_name) == ("PENDING", "unit.prepared.t")
        if not ON_POSTGRES:
            continue
        statements = server_statements()
        if run < prepared.THRESHOLD:
            assert statements == []
        else:
            [(name, generic, custom)] = statements
            assert name.startswith("django_tasks_")
            assert generic + custom == run - prepared.THRESHOLD + 1
    if ON_POSTGRES:  # after five runs for its values, one plan kept for any
        assert server_statements()[0][1] > 0
    else:
        assert not prepared._names


def test_a_claim_of_one_message_is_prepared_and_keeps_one_plan() -> None:
    broker = DatabaseBroker("django://")
    messages = [Message(id=f"c-{i}", task="unit.prepared.t") for i in range(9)]
    broker.publish(messages)
    claimed = []
    for _ in messages:
        [delivery] = broker.fetch(["default"], "unit/1", 1, 30.0)
        claimed.append(delivery.task_id)
        assert broker.ack([delivery]) == [delivery]
    assert claimed == [m.id for m in messages]  # in publish order, each once
    assert broker.fetch(["default"], "unit/1", 1, 30.0) == []
    if not ON_POSTGRES:
        assert not prepared._names
        return
    [(name, generic, custom)] = [s for s in server_statements()]
    assert name.startswith("django_tasks_")
    assert generic + custom == len(messages) + 1 - prepared.THRESHOLD + 1
    assert generic > 0  # the limit written into the text: a plan for any values


def test_a_delay_outside_a_transaction_is_prepared() -> None:
    from django_tasks.models import QueuedMessage, TaskResult

    broker = DatabaseBroker("django://")
    ids = [f"d-{i}" for i in range(6)]
    for task_id in ids:  # as delay() writes one message and its PENDING row
        assert broker.publish_with_pending([Message(id=task_id, task="unit.prepared.t")]) \
            is ON_POSTGRES
    if not ON_POSTGRES:  # written by the caller instead, unprepared
        assert not prepared._names
        return
    assert sorted(QueuedMessage.objects.values_list("task_id", flat=True)) == ids
    assert sorted(TaskResult.objects.filter(state="PENDING").values_list(
        "task_id", flat=True)) == ids
    [(name, generic, custom)] = server_statements()
    assert name.startswith("django_tasks_")
    assert generic + custom == len(ids) - prepared.THRESHOLD + 1


def test_a_pending_row_beside_a_message_elsewhere_is_prepared() -> None:
    """``delay()`` on Redis or RabbitMQ, outside a transaction: its PENDING row's lazy INSERT."""
    from django_tasks.models import TaskResult

    store = DatabaseResultStore("django://")
    ids = [f"r-{i}" for i in range(prepared.THRESHOLD + 2)]
    for task_id in ids:
        store.create_pending([Message(id=task_id, task="unit.prepared.t", args=(1,),
                                      priority=3)], durable=False)
    rows = TaskResult.objects.filter(task_id__in=ids).order_by("task_id")
    assert [(r.task_id, r.state, r.args, r.priority) for r in rows] == \
        [(task_id, "PENDING", "[1]", 3) for task_id in ids]
    if not ON_POSTGRES:
        assert not prepared._names
        return
    [(_, generic, custom)] = server_statements()
    assert generic + custom == len(ids) - prepared.THRESHOLD + 1


def test_a_worker_s_look_and_its_store_of_one_outcome_are_prepared() -> None:
    """The two statements of a batch of one on a broker outside the database: the look for
    ids already final, and the outcome's UPDATE (with its notification)."""
    from django_tasks.result import TaskOutcome

    store = DatabaseResultStore("django://")
    runs = prepared.THRESHOLD + 2
    ids = [f"w-{i}" for i in range(runs)]
    store.create_pending([Message(id=task_id, task="unit.prepared.t") for task_id in ids])
    now = dt.datetime.now(dt.UTC)
    for index, task_id in enumerate(ids):
        assert store.final_states([task_id, "w-missing"]) == {}
        written = store.store_alone([TaskOutcome(
            task_id=task_id, task_name="unit.prepared.t", state="SUCCESS", result=index,
            worker="unit", attempts=1, started_at=now, date_done=now)], [], lazy=True)
        assert written is ON_POSTGRES
        if not ON_POSTGRES:
            store.store_outcomes([TaskOutcome(
                task_id=task_id, task_name="unit.prepared.t", state="SUCCESS", result=index,
                worker="unit", attempts=1, started_at=now, date_done=now)])
        assert store.final_states([task_id]) == {task_id: "SUCCESS"}
        meta = store.get(task_id)
        assert meta is not None and meta.result == index
    store.flush()
    if not ON_POSTGRES:
        assert not prepared._names
        return
    # the look (one text for any number of ids), the store, the read
    statements = server_statements()
    assert len(statements) == 3, statements
    assert all(generic + custom >= runs - prepared.THRESHOLD
               for _, generic, custom in statements)
    # an outcome for a row that is final already writes nothing, prepared
    assert store.store_alone([TaskOutcome(
        task_id=ids[0], task_name="unit.prepared.t", state="FAILURE", worker="unit",
        attempts=2, date_done=now)], [], lazy=True) is False
    meta = store.get(ids[0])
    assert meta is not None and meta.state == "SUCCESS"


def test_a_missing_row_reads_as_none_prepared_or_not(store: DatabaseResultStore) -> None:
    for _ in range(prepared.THRESHOLD + 2):
        assert store.get("p-missing") is None


def test_a_statement_postgresql_forgot_runs_unprepared_and_turns_preparing_off(
        store: DatabaseResultStore, caplog: pytest.LogCaptureFixture) -> None:
    for _ in range(prepared.THRESHOLD):
        store.get("p-1")
    if ON_POSTGRES:
        assert len(server_statements()) == 1
        with connection.cursor() as cursor:
            cursor.execute("DEALLOCATE ALL")  # as a pooler's other server connection would be
    with caplog.at_level(logging.WARNING, logger="django_tasks.prepared"):
        for _ in range(prepared.THRESHOLD + 2):
            meta = store.get("p-1")
            assert meta is not None and meta.state == "PENDING"
    warnings = [r.getMessage() for r in caplog.records]
    if not ON_POSTGRES:  # nothing prepared, nothing forgotten
        assert warnings == [] and not prepared._off[0]
        return
    assert prepared._off[0]
    assert server_statements() == []
    assert len(warnings) == 1 and "TASKS_PREPARED_STATEMENTS = False" in warnings[0]


def test_a_statement_that_cannot_be_prepared_runs_unprepared() -> None:
    sql = "SELECT %s + %s"  # PostgreSQL cannot tell the parameters' types without values
    with connection.cursor() as cursor:
        for _ in range(prepared.THRESHOLD + 1):
            prepared.execute(cursor, sql, [1, 2])
            assert cursor.fetchone() == (3,)
    if ON_POSTGRES:
        assert sql in prepared._refused
        assert server_statements() == []
    else:
        assert not prepared._names and not prepared._refused


def test_a_statement_without_values_is_prepared_too() -> None:
    with connection.cursor() as cursor:
        for _ in range(prepared.THRESHOLD + 1):
            prepared.execute(cursor, "SELECT 40 + 2", [])
            assert cursor.fetchone() == (42,)
    if ON_POSTGRES:
        assert len(server_statements()) == 1
    else:
        assert not prepared._names


def test_statements_sent_ahead_run_before_it() -> None:
    if not ON_POSTGRES:  # elsewhere a statement ahead runs on its own, then the query
        with connection.cursor() as cursor:
            prepared.execute(cursor, "SELECT %s + 1", [1], ahead="SELECT 5")
            assert cursor.fetchone() == (2,)
        assert not prepared._names
        return
    sql = "SELECT relname FROM pg_class WHERE relname = %s"
    with connection.cursor() as cursor:
        for _ in range(prepared.THRESHOLD + 1):
            prepared.execute(cursor, sql, ["pg_class"], ahead="LISTEN unit_prepared")
            assert cursor.fetchone() == ("pg_class",)
        cursor.execute("SELECT pg_listening_channels()")
        assert cursor.fetchall() == [("unit_prepared",)]
        cursor.execute("UNLISTEN unit_prepared")
    assert len(server_statements()) == 1


def read_unprepared(store: DatabaseResultStore) -> None:
    """Read past the threshold: the row every time, and nothing prepared."""
    for _ in range(prepared.THRESHOLD + 2):
        meta = store.get("p-1")
        assert meta is not None and meta.state == "PENDING"
    if ON_POSTGRES:
        assert server_statements() == []


def test_nothing_is_prepared_inside_a_transaction(store: DatabaseResultStore) -> None:
    with transaction.atomic():
        read_unprepared(store)
    assert not any(prepared._names.values())


def test_nothing_is_prepared_with_the_setting_off(store: DatabaseResultStore,
                                                  settings: Any) -> None:
    settings.TASKS_PREPARED_STATEMENTS = False
    read_unprepared(store)
    assert not any(prepared._names.values())


@pytest.mark.parametrize(("sql", "count", "expected"), [
    ("SELECT %s, %s", 2, "SELECT $1, $2"),
    ("SELECT 'a%%' || %s", 1, "SELECT 'a%%' || $1"),
    ("SELECT %s", 2, None),  # fewer placeholders than values
    ("SELECT %(name)s", 1, None),  # named placeholders are not ours
])
def test_placeholders_are_numbered(sql: str, count: int, expected: str | None) -> None:
    assert prepared._numbered(sql, count) == expected
