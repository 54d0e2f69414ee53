"""The result store contract of ``results/base.py``, on the memory and the database store."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from django_tasks import durability, states
from django_tasks.message import Message
from django_tasks.result import TaskOutcome
from django_tasks.results.base import ResultStore
from django_tasks.results.database import DatabaseResultStore
from django_tasks.results.memory import MemoryResultStore

NOW = dt.datetime.now(dt.UTC)


@pytest.fixture(params=["memory", pytest.param("database", marks=pytest.mark.django_db)])
def store(request: pytest.FixtureRequest) -> ResultStore:
    if request.param == "database":
        return DatabaseResultStore("django://")
    return MemoryResultStore("memory://")


def outcome(task_id: str, state: str = states.SUCCESS, result: Any = None,
            done: dt.datetime | None = NOW, **extra: Any) -> TaskOutcome:
    return TaskOutcome(task_id=task_id, task_name="unit.stores.t", state=state, result=result,
                       queue="default", date_done=done, **extra)


def pending(store: ResultStore, *task_ids: str) -> None:
    store.create_pending([Message(id=i, task="unit.stores.t", args=(1,)) for i in task_ids])


def test_unknown_id_is_none(store: ResultStore) -> None:
    assert store.get("missing") is None


def test_create_pending(store: ResultStore) -> None:
    pending(store, "a", "b")
    meta = store.get("a")
    assert meta is not None
    assert (meta.task_id, meta.state, meta.task_name, meta.queue) == (
        "a", states.PENDING, "unit.stores.t", "default")
    assert meta.result is None and meta.date_done is None
    assert store.get("b") is not None


def test_store_outcomes_updates_a_pending_row(store: ResultStore) -> None:
    pending(store, "a")
    store.store_outcomes([outcome("a", result={"n": [1, 2]}, worker="w@h", retries=2,
                                  traceback=None)])
    meta = store.get("a")
    assert meta is not None
    assert (meta.state, meta.result, meta.worker, meta.retries) == (
        states.SUCCESS, {"n": [1, 2]}, "w@h", 2)
    assert meta.task_name == "unit.stores.t"
    assert meta.date_done == NOW


def test_store_outcomes_is_an_upsert(store: ResultStore) -> None:
    store.store_outcomes([outcome("new", states.RETRY, {"exc_type": "OSError"}, done=None,
                                  traceback="Traceback ...")])
    retrying = store.get("new")
    assert retrying is not None and retrying.state == states.RETRY
    assert retrying.traceback == "Traceback ..."
    store.store_outcomes([outcome("new", states.SUCCESS, 5), outcome("other", result=6)])
    meta = store.get("new")
    assert meta is not None and (meta.state, meta.result) == (states.SUCCESS, 5)
    assert meta.traceback is None
    other = store.get("other")
    assert other is not None and other.result == 6


def test_an_outcome_keeps_the_arguments_written_at_enqueue(store: ResultStore) -> None:
    pending(store, "a")
    started = NOW - dt.timedelta(seconds=3)
    store.store_outcomes([outcome("a", states.RETRY, done=None, started_at=started),
                          outcome("a", states.SUCCESS, 7, started_at=started)])  # last wins
    meta = store.get("a")
    assert meta is not None and (meta.state, meta.result) == (states.SUCCESS, 7)
    if isinstance(store, DatabaseResultStore):
        from django_tasks.models import TaskResult

        row = TaskResult.objects.get(task_id="a")
        assert (row.args, row.started_at, row.date_done) == ("[1]", started, NOW)


def test_store_outcomes_of_nothing_is_fine(store: ResultStore) -> None:
    store.store_outcomes([])


def test_extra_types_survive_in_the_store(store: ResultStore) -> None:
    value = {"at": dt.datetime(2024, 1, 1, tzinfo=dt.UTC), "day": dt.date(2024, 1, 2)}
    store.store_outcomes([outcome("typed", result=value)])
    meta = store.get("typed")
    assert meta is not None and meta.result == value


def test_mark_started(store: ResultStore) -> None:
    pending(store, "run")
    store.mark_started([outcome("run", state=states.STARTED, done=None, worker="w@h",
                                started_at=NOW)])
    meta = store.get("run")
    assert meta is not None
    assert (meta.state, meta.result, meta.worker) == (states.STARTED, None, "w@h")


def test_final_states_reports_only_finished_ids(store: ResultStore) -> None:
    pending(store, "queued")
    store.store_outcomes([
        outcome("ok", states.SUCCESS), outcome("bad", states.FAILURE),
        outcome("again", states.RETRY, done=None), outcome("going", states.STARTED, done=None),
    ])
    store.revoke("stopped")
    found = store.final_states(["queued", "ok", "bad", "again", "going", "stopped", "unknown"])
    assert found == {"ok": states.SUCCESS, "bad": states.FAILURE, "stopped": states.REVOKED}
    assert store.final_states([]) == {}


@pytest.mark.django_db
def test_final_states_looks_up_by_task_id_alone() -> None:
    """The worker asks this for every batch it takes. Given the state too, PostgreSQL may
    combine the task id index with the state index and read every final row's entry of the
    latter (milliseconds per batch on a large table): the ids alone decide the rows, and
    the states are compared after."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    store = DatabaseResultStore("django://")
    store.store_outcomes([outcome("ok", states.SUCCESS), outcome("later", states.RETRY)])
    with CaptureQueriesContext(connection) as queries:
        assert store.final_states(["ok", "later", "unknown"]) == {"ok": states.SUCCESS}
    [query] = [q["sql"] for q in queries.captured_queries]
    where = query.split(" WHERE ", 1)[1]
    assert '"state"' not in where and "ORDER BY" not in where, query


@pytest.mark.django_db(transaction=True)
def test_rows_that_need_not_be_durable_are_committed_without_waiting_for_the_disk() -> None:
    """PENDING rows of messages that a broker outside the database holds: on PostgreSQL,
    outside a transaction, their statement turns ``synchronous_commit`` off for itself
    alone. In a transaction (the caller's, which it must not change), on request, and on
    the other databases, they are written as always."""
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    def setting() -> str:
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            return str(cursor.fetchone()[0])

    def written(task_id: str, *, durable: bool, atomic: bool = False) -> list[str]:
        rows = [Message(id=task_id, task="unit.stores.t", args=(1,))]
        with CaptureQueriesContext(connection) as queries:
            if atomic:
                with transaction.atomic():
                    store.create_pending(rows, durable=durable)
            else:
                store.create_pending(rows, durable=durable)
        meta = store.get(task_id)
        assert meta is not None and meta.state == states.PENDING
        return [q["sql"] for q in queries.captured_queries]

    store = DatabaseResultStore("django://")
    postgres = connection.vendor == "postgresql"
    before = setting() if postgres else ""
    fast = durability.LAZY
    [insert] = written("a", durable=False)
    assert (fast in insert) is postgres, insert
    assert not any(fast in sql for sql in written("b", durable=False, atomic=True))
    assert not any(fast in sql for sql in written("c", durable=True))
    if postgres:
        assert setting() == before  # the session keeps its own setting


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("size", [1, 3])
def test_missing_rows_are_made_in_one_statement_that_leaves_existing_rows_alone(
        size: int) -> None:
    """The worker's rows for messages enqueued without one (``TASKS_STORE_PENDING =
    False``), just before their tasks run: rows that exist, final or not, are kept as they
    are; on PostgreSQL, outside a transaction, one statement that does not wait for the
    disk (the flush after the outcomes does)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    store = DatabaseResultStore("django://")
    pending(store, "waiting")
    store.store_outcomes([outcome("done", states.SUCCESS, result="kept")])
    new = [f"new{i}" for i in range(size)]
    messages = [Message(id=i, task="unit.stores.t", args=(2,), queue="q") for i in
                ["waiting", "done", *new]]
    with CaptureQueriesContext(connection) as queries:
        store.create_missing(messages)
    sql = [q["sql"] for q in queries.captured_queries]
    if connection.vendor == "postgresql":
        [insert] = sql
        assert durability.LAZY in insert, insert
    got = {i: (m.state, m.result, m.queue) for i in ["waiting", "done", *new]
           if (m := store.get(i))}
    assert got == {"waiting": (states.PENDING, None, "default"),
                   "done": (states.SUCCESS, "kept", "default"),
                   **{i: (states.PENDING, None, "q") for i in new}}
    store.create_missing([])  # nothing to write: no statement


@pytest.mark.django_db
def test_the_worker_s_statements_have_few_texts_for_any_batch_on_postgresql() -> None:
    """The worker's writes of outcomes and counters: PostgreSQL is given the rows as one
    JSON parameter, so the statement's text is the same for any batch (the driver parses a
    statement of more than 50 parameters again each time): one for small batches, one for
    larger (``_TOLD``), one for the counters. Elsewhere, rows are parameters."""
    from django.db import connection

    store = DatabaseResultStore("django://")
    seen: list[tuple[str, int]] = []

    def spy(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        seen.append((sql, len(params or ())))
        return execute(sql, params, many, context)

    texts: dict[str, set[str]] = {"store": set(), "count": set()}
    for size in (1, 16, 17, 40):
        ids = [f"b{size}-{i}" for i in range(size)]
        pending(store, *ids)
        done = [outcome(i, started_at=NOW) for i in ids]
        for what, write in (("store", store.store_outcomes), ("count", store.count_outcomes)):
            seen.clear()
            with connection.execute_wrapper(spy):
                write(done)
            if connection.vendor == "postgresql":
                [(sql, params)] = seen
                texts[what].add(sql)
                assert params <= 3, (what, size, params)
        assert all(store.get(i).state == states.SUCCESS for i in ids)  # type: ignore[union-attr]
    if connection.vendor == "postgresql":
        assert len(texts["store"]) == 2 and len(texts["count"]) == 1, texts


def test_forget(store: ResultStore) -> None:
    store.store_outcomes([outcome("done")])
    store.forget("done")
    assert store.get("done") is None
    store.forget("done")  # forgetting twice is harmless


def test_revoke_a_pending_task(store: ResultStore) -> None:
    pending(store, "p")
    assert store.revoke("p") is True
    meta = store.get("p")
    assert meta is not None and meta.state == states.REVOKED
    assert meta.date_done is not None
    assert meta.task_name == "unit.stores.t"


def test_revoke_an_unknown_id_records_it(store: ResultStore) -> None:
    # The message may be published later (or on another broker): it must not run then.
    assert store.revoke("not-yet") is True
    meta = store.get("not-yet")
    assert meta is not None and meta.state == states.REVOKED


@pytest.mark.parametrize("state", [states.SUCCESS, states.FAILURE])
def test_revoke_does_not_touch_a_finished_task(store: ResultStore, state: str) -> None:
    store.store_outcomes([outcome("f", state, 1)])
    assert store.revoke("f") is False
    meta = store.get("f")
    assert meta is not None and (meta.state, meta.result) == (state, 1)


def test_revoke_twice_is_false_the_second_time(store: ResultStore) -> None:
    assert store.revoke("r") is True
    assert store.revoke("r") is False


def test_revoke_a_running_task(store: ResultStore) -> None:
    store.store_outcomes([outcome("s", states.STARTED, done=None)])
    assert store.revoke("s") is True
    meta = store.get("s")
    assert meta is not None and meta.state == states.REVOKED


def test_prune_deletes_old_finished_results_in_bounded_batches(store: ResultStore) -> None:
    old = NOW - dt.timedelta(days=3)
    cutoff = NOW - dt.timedelta(days=1)
    store.store_outcomes([outcome(f"old{i}", states.SUCCESS, done=old) for i in range(3)])
    store.store_outcomes([outcome("old-failed", states.FAILURE, done=old),
                          outcome("recent", states.SUCCESS, done=NOW),
                          outcome("running", states.STARTED, done=None)])
    pending(store, "queued")
    store.revoke("queued-revoked")
    assert store.prune(cutoff, 2) == 2
    assert store.prune(cutoff, 2) == 2
    assert store.prune(cutoff, 2) == 0
    left = ["old0", "old1", "old2", "old-failed", "recent", "running", "queued",
            "queued-revoked"]
    assert [i for i in left if store.get(i) is not None] == [
        "recent", "running", "queued", "queued-revoked"]


def test_prune_with_nothing_to_prune(store: ResultStore) -> None:
    assert store.prune(NOW, 100) == 0


def test_describe_is_the_url(store: ResultStore) -> None:
    assert store.describe() in ("memory://", "django://")


@pytest.mark.parametrize("final", [states.SUCCESS, states.FAILURE, states.REVOKED])
def test_a_final_state_is_never_replaced(store: ResultStore, final: str) -> None:
    pending(store, "a")
    store.store_outcomes([outcome("a", final, result=1, worker="rescuer", attempts=2)])
    for late in (states.FAILURE, states.SUCCESS, states.RETRY):
        store.store_outcomes([outcome("a", late, result=2, worker="late", attempts=1)])
    store.mark_started([outcome("a", worker="late", attempts=1)])
    meta = store.get("a")
    assert meta is not None
    assert (meta.state, meta.result, meta.worker) == (final, 1, "rescuer")


def test_a_final_state_is_kept_for_an_id_written_without_a_pending_row(
        store: ResultStore) -> None:
    store.store_outcomes([outcome("solo", states.SUCCESS, result="first")])
    store.store_outcomes([outcome("solo", states.FAILURE, result="late")])
    meta = store.get("solo")
    assert meta is not None and (meta.state, meta.result) == (states.SUCCESS, "first")


def test_retry_and_started_are_not_final(store: ResultStore) -> None:
    pending(store, "a")
    store.mark_started([outcome("a", worker="w1")])
    store.store_outcomes([outcome("a", states.RETRY, result={"exc_type": "X"})])
    store.store_outcomes([outcome("a", states.SUCCESS, result=3)])
    meta = store.get("a")
    assert meta is not None and (meta.state, meta.result) == (states.SUCCESS, 3)


def test_a_batch_mixing_new_final_and_pending_ids(store: ResultStore) -> None:
    pending(store, "p1", "p2")
    store.store_outcomes([outcome("p2", states.SUCCESS, result="kept")])
    store.store_outcomes([outcome("p1", result=1), outcome("p2", states.FAILURE, result=2),
                          outcome("new", result=3)])
    got = {i: (m.state, m.result) for i in ("p1", "p2", "new") if (m := store.get(i))}
    assert got == {"p1": (states.SUCCESS, 1), "p2": (states.SUCCESS, "kept"),
                   "new": (states.SUCCESS, 3)}


def test_text_no_database_can_hold_is_stored_escaped(store: ResultStore) -> None:
    pending(store, "a")
    store.store_outcomes([outcome("a", states.FAILURE, result={"exc_message": "nul\x00"},
                                  traceback="Traceback: bad \x00 byte and \ud800")])
    meta = store.get("a")
    assert meta is not None and meta.state == states.FAILURE
    assert meta.result == {"exc_message": "nul\x00"}  # inside JSON it is escaped anyway
    if isinstance(store, DatabaseResultStore):
        assert meta.traceback == "Traceback: bad \\x00 byte and \\ud800"


def test_values_of_the_types_celerys_json_carries_come_back_as_themselves(
        store: ResultStore) -> None:
    import uuid
    from decimal import Decimal

    value = {"blob": b"\x00\xff", "text": b"caf\xc3\xa9", "at": NOW, "day": NOW.date(),
             "time": NOW.time(), "price": Decimal("9.99"), "id": uuid.UUID(int=5)}
    pending(store, "typed")
    store.store_outcomes([outcome("typed", result=value), outcome("upserted", result=[b"x"])])
    meta = store.get("typed")
    assert meta is not None and meta.result == value
    assert {type(v) for v in meta.result.values()} == {type(v) for v in value.values()}
    upserted = store.get("upserted")
    assert upserted is not None and upserted.result == [b"x"]


@pytest.mark.django_db
def test_the_result_table_has_one_index_on_the_task_id_and_it_is_unique() -> None:
    """Every outcome's UPDATE writes into each index of the table: the task id is indexed
    once, by its unique constraint (on PostgreSQL ``unique=True`` would add a second index,
    for LIKE, that nothing uses)."""
    from django.db import IntegrityError, connection, transaction

    from django_tasks.models import TaskResult

    with connection.cursor() as cursor:
        found = connection.introspection.get_constraints(cursor, TaskResult._meta.db_table)
    on_task_id = {name: c for name, c in found.items() if c["columns"] == ["task_id"]}
    assert list(on_task_id) == ["tasks_result_task_id_key"], on_task_id
    assert on_task_id["tasks_result_task_id_key"]["unique"]
    TaskResult.objects.create(task_id="t-1", task_name="unit.t", created_at=NOW)
    with pytest.raises(IntegrityError), transaction.atomic():
        TaskResult.objects.create(task_id="t-1", task_name="unit.t", created_at=NOW)


@pytest.mark.django_db
def test_a_batch_is_found_through_the_task_id_index_however_small_its_share() -> None:
    """200 outcomes among 20,000 rows. By PostgreSQL's default prices a batch of one percent
    of the table is cheaper read whole (each index probe priced as a read from disk), and
    reading it whole took three times as long; the store's statements keep the batch's size
    from the planner, so that it takes the rows through the task id index."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from django_tasks.models import TaskResult

    TaskResult.objects.bulk_create(
        [TaskResult(task_id=f"t-{i}", task_name="unit.t", created_at=NOW) for i in range(20000)],
        batch_size=2000)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {TaskResult._meta.db_table}")
    store = DatabaseResultStore("django://")
    ids = [f"t-{i}" for i in range(5000, 5200)]
    with CaptureQueriesContext(connection) as captured:
        assert store.final_states(ids) == {}
        store.store_outcomes([outcome(task_id) for task_id in ids])
    assert store.final_states(ids) == dict.fromkeys(ids, states.SUCCESS)
    assert TaskResult.objects.filter(state=states.SUCCESS).count() == 200
    if connection.vendor != "postgresql":
        return  # the statements above hold the ids as a list of values: the index is taken
    lookups = [q["sql"] for q in captured.captured_queries
               if q["sql"].startswith(("SELECT task_id", "WITH v AS"))]
    assert len(lookups) == 2, captured.captured_queries
    for sql in lookups:
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN " + sql)
            plan = "\n".join(row[0] for row in cursor.fetchall())
        assert "Seq Scan on django_tasks_taskresult" not in plan, plan
        assert "tasks_result_task_id_key" in plan, plan


@pytest.mark.django_db
def test_a_batch_is_stored_and_counted_by_one_statement_on_postgresql() -> None:
    """The worker's settlement of a batch without follow-ups: outcomes and counters. On
    PostgreSQL the counters' upsert rides in the outcomes' UPDATE (a round trip less);
    elsewhere they are two statements or more. Either way both are written."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from django_tasks.models import TaskCounter

    store = DatabaseResultStore("django://")
    ids = ["sc-1", "sc-2"]
    pending(store, *ids)
    done = [outcome(i, started_at=NOW - dt.timedelta(seconds=1)) for i in ids]
    with CaptureQueriesContext(connection) as captured:
        store.store_and_count(done, done)
    writes = [q for q in captured.captured_queries
              if not q["sql"].startswith(("SAVEPOINT", "RELEASE"))]
    assert len(writes) == 1 if connection.vendor == "postgresql" else len(writes) >= 2, writes
    store.store_and_count([outcome("sc-3")], [outcome("sc-3")])  # no row: written after it
    assert all(store.get(i).state == states.SUCCESS  # type: ignore[union-attr]
               for i in [*ids, "sc-3"])
    counted = TaskCounter.objects.filter(task_name="unit.stores.t", state=states.SUCCESS)
    assert sorted(counted.values_list("count", flat=True)) == [3, 3]  # its minute, its hour



def test_drop_pending_deletes_only_rows_still_pending(store: ResultStore) -> None:
    """After a failed publish: a row a worker moved on (it took the message after all) stays."""
    pending(store, "a", "b", "c")
    store.mark_started([outcome("b", states.STARTED, done=None)])
    assert store.drop_pending(["a", "b", "missing"]) == 1
    assert store.get("a") is None
    assert store.get("b").state == states.STARTED  # type: ignore[union-attr]
    assert store.get("c").state == states.PENDING  # type: ignore[union-attr]


def test_revoke_unfinished_marks_only_rows_not_final(store: ResultStore) -> None:
    """After a purge: a row already final stays; no row is made for an unknown id."""
    pending(store, "a", "b")
    store.store_outcomes([outcome("b", states.SUCCESS, result=1)])
    assert store.revoke_unfinished(["a", "b", "missing"]) == 1
    a, b = store.get("a"), store.get("b")
    assert a is not None and a.state == states.REVOKED and a.date_done is not None
    assert b is not None and b.state == states.SUCCESS
    assert store.get("missing") is None
