"""The database broker with database results: the statement that claims a batch also reads
the state stored for each message's task (PostgreSQL; on SQLite, whose RETURNING cannot use
an index there, and on MySQL/MariaDB, the worker looks as before), so the worker makes no
look of its own, and still acks unrun what finished or was revoked. Every statement of a
worker's batch finds its rows through an index, on every database."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection, transaction

from django_tasks import states
from django_tasks.conf import get_broker, get_result_store
from django_tasks.models import QueuedMessage, TaskResult
from django_tasks.publishing import publish
from django_tasks.results.base import ResultStore
from django_tasks.task import Task, build_message
from django_tasks.worker.consumer import Consumer

pytestmark = [pytest.mark.django_db(transaction=True),
              pytest.mark.usefixtures("database_tasks")]
# SQLite's RETURNING would scan the result table for each message (brokers/database.py).
CLAIM_RETURNS = connection.vendor == "postgresql"


@pytest.fixture
def runs() -> list[int]:
    return []


@pytest.fixture
def record(define: Callable[..., Any], runs: list[int]) -> Task[Any, Any]:
    return define(name="unit.look.record")(lambda x: runs.append(x) or x)


def store() -> ResultStore:
    found = get_result_store()
    assert found is not None
    return found


def drain(watch: Callable[..., Any]) -> list[str | None]:
    """Run a consumer until a claim finds the queue empty, every statement passed to
    ``watch`` (a Django execute wrapper); return what each claim was given as ``look``."""
    stop = threading.Event()
    worker = Consumer(queues=["default"], owner="test/1", hostname="test@host", prefetch=16,
                      lease=30, stop=stop)
    claims: list[str | None] = []
    real_fetch = worker.broker.fetch

    def fetch(*args: Any, look: str | None = None) -> Any:
        claims.append(look)
        got = real_fetch(*args, look=look)
        if not got:  # all taken: stop
            stop.set()
        return got

    worker.broker.fetch = fetch  # type: ignore[method-assign]
    try:
        with connection.execute_wrapper(watch):
            worker.run()
    finally:
        del worker.broker.fetch
    return claims


def test_the_claim_reads_each_messages_stored_state(record: Task[Any, Any]) -> None:
    pending, revoked = (publish(build_message(record.name, (i,), {})).id for i in (1, 2))
    gone = publish(build_message(record.name, (3,), {})).id
    assert store().revoke(revoked)
    TaskResult.objects.filter(task_id=gone).delete()
    look = store().state_lookup()
    assert look is not None
    deliveries = {d.task_id: d for d in get_broker().fetch(["default"], "w/1", 16, 30,
                                                          look=look)}
    assert len(deliveries) == 3
    if not CLAIM_RETURNS:
        assert not any(d.looked_up for d in deliveries.values())
        return
    assert all(d.looked_up for d in deliveries.values())
    assert {i: d.stored_state for i, d in deliveries.items()} == {
        pending: states.PENDING, revoked: states.REVOKED, gone: None}


def test_a_worker_sharing_the_database_makes_no_look_of_its_own(
        record: Task[Any, Any], runs: list[int]) -> None:
    """The consumer passes the store's lookup to the claim; a revoked task and one already
    finished are acked unrun, the others run, and on PostgreSQL no statement looks for final
    states (elsewhere one look a batch)."""
    ids = [publish(build_message(record.name, (i,), {})).id for i in range(4)]
    assert store().revoke(ids[1])
    TaskResult.objects.filter(task_id=ids[2]).update(state=states.SUCCESS, result="7")
    looks: list[str] = []

    def watch(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if sql.startswith("SELECT task_id, state FROM"):
            looks.append(sql)
        return execute(sql, params, many, context)

    claims = drain(watch)
    assert claims and set(claims) == {store().state_lookup()}
    assert sorted(runs) == [0, 3]
    assert [TaskResult.objects.get(task_id=i).state for i in ids] == [
        states.SUCCESS, states.REVOKED, states.SUCCESS, states.SUCCESS]
    assert TaskResult.objects.get(task_id=ids[2]).result == "7"  # not run again
    assert not QueuedMessage.objects.exists()
    assert (looks == []) if CLAIM_RETURNS else (len(looks) == len(claims) - 1)


def test_a_delivery_whose_body_names_another_id_is_looked_up_by_the_worker(
        record: Task[Any, Any], runs: list[int]) -> None:
    """The lookup reads the broker's own column: where the body's id differs from it, the
    worker looks up the body's id as before (here: finished, so not run)."""
    message, other = (build_message(record.name, (i,), {}) for i in (5, 6))
    publish(message)
    store().create_pending([other])  # PENDING, as the lookup will find it
    TaskResult.objects.filter(task_id=message.id).update(state=states.SUCCESS)
    QueuedMessage.objects.update(task_id=other.id)
    look = store().state_lookup()
    deliveries = get_broker().fetch(["default"], "test/1", 16, 30, look=look)
    assert [d.stored_state for d in deliveries] == (
        [states.PENDING] if CLAIM_RETURNS else [None])
    worker = Consumer(queues=["default"], owner="test/1", hostname="test@host", prefetch=16,
                      lease=30, stop=threading.Event())
    worker.process(deliveries)
    assert runs == [] and not QueuedMessage.objects.exists()


def full_scans(sql: str, params: Any) -> list[str]:
    """The tables of ours that ``sql`` reads whole, by the database's own plan (with
    PostgreSQL told to avoid such reads where any index can serve: tables of a few rows
    would be read whole anyway)."""
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN QUERY PLAN " + sql, params)
            details = [row[-1] for row in cursor.fetchall()]
        aliases = dict(re.findall(r"(django_tasks_\w+)(?: AS)? (\w+)\b", sql))
        tables = {alias: table for table, alias in aliases.items()}
        return [tables.get(found, found) for detail in details
                if (match := re.match(r"SCAN (\w+)(?! USING)", detail))
                and (found := match.group(1)) and
                tables.get(found, found).startswith("django_tasks_")]
    if connection.vendor == "postgresql":
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("EXPLAIN " + sql, params)
            plan = [row[0] for row in cursor.fetchall()]
            transaction.set_rollback(True)  # EXPLAIN alone writes nothing; the SET goes
        return re.findall(r"Seq Scan on (django_tasks_\w+)", "\n".join(plan))
    with connection.cursor() as cursor:  # MySQL, MariaDB: a table no key can serve
        cursor.execute("EXPLAIN " + sql, params)
        names = [c[0] for c in cursor.description]
        rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    return [str(r["table"]) for r in rows if r.get("type") == "ALL"
            and r.get("possible_keys") is None and str(r["table"]).startswith("django_tasks_")]


def test_every_statement_of_a_workers_batch_reads_through_an_index(
        record: Task[Any, Any], runs: list[int]) -> None:
    """Each statement the claim, the look, the settling and the question an idle worker
    asks (when the next message comes due) send reads the queue and result tables through
    an index: one that reads a whole table costs each batch as much as the
    tables are big (SQLite once ran the claim's look that way: a drain of 20,000 went at
    570 tasks a second)."""
    older = [build_message(record.name, (i,), {}) for i in range(300)]
    store().create_pending(older)  # rows that a scan would read
    TaskResult.objects.filter(task_id__in=[m.id for m in older]).update(state=states.SUCCESS)
    ids = [publish(build_message(record.name, (i,), {})).id for i in range(3)]
    sent: list[tuple[str, Any]] = []

    def watch(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        words = sql.lstrip().split(None, 1)
        if not many and words and words[0].upper() in ("SELECT", "UPDATE", "DELETE", "WITH"):
            sent.append((sql, params))
        return execute(sql, params, many, context)

    drain(watch)
    assert sorted(runs) == [0, 1, 2]
    assert {TaskResult.objects.get(task_id=i).state for i in ids} == {states.SUCCESS}
    ours = [(sql, params) for sql, params in sent if "django_tasks_" in sql]
    assert any("lease_owner" in sql for sql, _ in ours)  # the claim is among them
    # and, after the empty one, next_due
    assert any(sql.startswith("SELECT MIN(") for sql, _ in ours)
    assert {sql.split()[0] for sql, _ in ours} >= {"UPDATE"}
    scans = {sql[:120]: tables for sql, params in ours
             if (tables := full_scans(sql, params))}
    assert scans == {}
