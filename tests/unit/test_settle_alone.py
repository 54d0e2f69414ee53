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
from django_tasks.durability import FLUSH, LAZY
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


def test_a_batch_is_acked_and_stored_by_one_statement_and_counted_when_its_runs_are_due(
        double: Task[Any, Any], statements: list[tuple[str, bool]]) -> None:
    ids = [publish(build_message(double.name, (i,), {})).id for i in range(3)]
    deliveries = get_broker().fetch(["default"], "test/1", 16, 30)
    statements.clear()
    consumer().process(deliveries)
    store = get_result_store()
    assert store is not None
    assert [store.get(i).result for i in ids] == [0, 2, 4]  # type: ignore[union-attr]
    assert not QueuedMessage.objects.exists()
    # the looks (prepared at the third: PREPARE, EXECUTE), and the flush
    writes = [s for s in statements if s[0] not in ("SELECT", "PREPARE", "EXECUTE")]
    if ON_POSTGRES:  # the flush puts it on disk; the runs are kept back, not yet due
        assert writes == [("WITH", False)] and counted() == 0
        store.write_kept()
        assert counted() == 0
        store.write_kept(force=True)
        assert counted() == 3
    else:  # the ack, then the outcomes and counts, in one transaction
        assert counted() == 3
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


def lazy_write_then_flush(deliveries: Any) -> tuple[list[str], int]:
    """Process ``deliveries`` watching each statement; on PostgreSQL also the position in
    the log just after the one statement committed (0 elsewhere)."""
    seen: list[str] = []
    written_up_to: list[str] = []

    def watch(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        seen.append(sql)
        result = execute(sql, params, many, context)
        if ON_POSTGRES and sql.startswith("WITH"):
            with connection.cursor() as cursor:  # the log written so far: the commit in it
                cursor.execute("SELECT pg_current_wal_insert_lsn()")
                written_up_to.append(cursor.fetchone()[0])
        return result

    with connection.execute_wrapper(watch):
        consumer().process(deliveries)
    if not ON_POSTGRES:
        assert not any(LAZY in sql or sql == FLUSH for sql in seen), seen
        return seen, 0
    [write] = [i for i, sql in enumerate(seen) if sql.startswith("WITH")]
    assert LAZY in seen[write] and seen[write + 1] == "SELECT pg_current_wal_insert_lsn()"
    with connection.cursor() as cursor:  # the flush put it on disk
        cursor.execute("SELECT pg_current_wal_flush_lsn() >= %s::pg_lsn", [written_up_to[0]])
        assert cursor.fetchone()[0] is True
    return seen, write + 2


def test_outcomes_are_seen_before_the_disk_has_them_and_on_disk_before_the_process_goes_on(
        double: Task[Any, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """On PostgreSQL the one statement commits without waiting for the disk (a waiting
    ``get()`` wakes sooner), and without the counts; the settler then flushes in a
    transaction that waits for the disk: the log on disk reaches past the first commit
    before the process goes on. That transaction is the counters' upsert of the runs kept
    back once they are due (the batch's own among them), or else ``FLUSH``, and the runs
    are kept. Elsewhere nothing is lazy and nothing is flushed."""
    from django_tasks.results import counters

    ids = [publish(build_message(double.name, (i,), {})).id for i in range(2)]
    seen, flush = lazy_write_then_flush(get_broker().fetch(["default"], "test/1", 16, 30))
    assert sorted(TaskResult.objects.filter(task_id__in=ids).values_list("state", flat=True)) \
        == [states.SUCCESS] * 2
    assert not QueuedMessage.objects.exists()
    table = connection.ops.quote_name(TaskCounter._meta.db_table)
    if ON_POSTGRES:
        assert table not in seen[flush - 2] and seen[flush:] == [FLUSH] and counted() == 0
        monkeypatch.setattr(counters, "WRITE_EVERY", 0.0)  # the kept runs are due now
        publish(build_message(double.name, (9,), {}))
        seen, flush = lazy_write_then_flush(get_broker().fetch(["default"], "test/1", 16, 30))
        assert seen[flush].startswith(f"INSERT INTO {table}") and len(seen) == flush + 1
    assert counted() == 3 if ON_POSTGRES else counted() == 2


def test_a_bigger_batch_is_counted_in_its_statement_and_flushed_by_an_empty_message(
        double: Task[Any, Any]) -> None:
    """More than ``_COUNT_LATER`` outcomes (a busy worker): counted in the lazy statement,
    so that the counter rows every process adds to are not held locked while the disk
    flushes; ``FLUSH`` then puts it on disk."""
    from django_tasks.results.database import _COUNT_LATER

    size = _COUNT_LATER + 2
    for i in range(size):
        publish(build_message(double.name, (i,), {}))
    seen, flush = lazy_write_then_flush(get_broker().fetch(["default"], "test/1", 16, 30))
    assert counted() == size and not QueuedMessage.objects.exists()
    if ON_POSTGRES:
        counters = connection.ops.quote_name(TaskCounter._meta.db_table)
        assert counters in seen[flush - 2] and seen[flush:] == [FLUSH]


def test_a_batch_that_counts_nothing_is_flushed_by_an_empty_logical_message(
        double: Task[Any, Any]) -> None:
    """A batch of messages whose tasks are final already (acked unrun, nothing to count):
    the one statement acks them lazily, and ``FLUSH`` puts the ack on disk."""
    task_id = publish(build_message(double.name, (3,), {})).id
    TaskResult.objects.filter(task_id=task_id).update(state=states.SUCCESS)
    seen, flush = lazy_write_then_flush(get_broker().fetch(["default"], "test/1", 16, 30))
    assert not QueuedMessage.objects.exists() and counted() == 0
    if ON_POSTGRES:
        assert seen[flush:] == [FLUSH]


def test_a_broker_elsewhere_is_acked_after_the_lazy_write_is_flushed(
        double: Task[Any, Any]) -> None:
    """A broker outside the database (here the memory broker, as Redis and RabbitMQ): the
    outcomes are written lazily, flushed, and only then acked; a flush that fails leaves
    the message unacked and the batch kept, to be written again."""
    from django.db import OperationalError
    from django.test import override_settings

    from django_tasks.conf import reset_cache

    with override_settings(TASKS_BROKER_URL="memory://", TASKS_RESULT_BACKEND="django://"):
        reset_cache()
        try:
            broker, store = get_broker(), get_result_store()
            assert store is not None
            order: list[str] = []
            real_flush, real_ack = store.flush, broker.ack

            def flush() -> None:
                order.append("flush")
                real_flush()

            def ack(deliveries: Any) -> Any:
                order.append("ack")
                return real_ack(deliveries)

            store.flush = flush  # type: ignore[method-assign]
            broker.ack = ack  # type: ignore[method-assign]
            task_id = publish(build_message(double.name, (4,), {})).id
            consumer().process(broker.fetch(["default"], "test/1", 16, 30))
            assert order == ["flush", "ack"]
            assert TaskResult.objects.get(task_id=task_id).state == states.SUCCESS

            def refuse(*args: Any) -> Any:
                raise OperationalError("the database went away")

            def failing() -> None:
                order.append("failed flush")
                refuse()

            order.clear()
            store.flush = failing  # type: ignore[method-assign]
            publish(build_message(double.name, (5,), {}))
            worker = consumer()
            worker.process(broker.fetch(["default"], "test/1", 16, 30))
            assert "ack" not in order and worker.settler.waiting
            assert set(order) == {"failed flush"}
            store.flush = flush  # type: ignore[method-assign]
            order.clear()
            assert worker.settler.retry()
            assert order == ["flush", "ack"]
            assert broker.queue_counts(["default"])["default"].ready == 0
        finally:
            reset_cache()


def test_a_run_whose_count_failed_is_written_again_and_counted_once(
        double: Task[Any, Any]) -> None:
    """A broker outside the database: the transaction that counts the run fails once (on
    PostgreSQL the flush after the lazy write, after which its runs would be kept back;
    elsewhere the outcomes' transaction, which holds the counters' upsert). The batch is
    written again before the ack, and the run is counted once."""
    from django.db import OperationalError
    from django.test import override_settings

    from django_tasks.conf import reset_cache

    table = connection.ops.quote_name(TaskCounter._meta.db_table)
    refused: list[str] = []

    def refuse_once(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if (sql == FLUSH or sql.startswith(f"INSERT INTO {table}")) and not refused:
            refused.append(sql)
            raise OperationalError("the connection broke")
        return execute(sql, params, many, context)

    with override_settings(TASKS_BROKER_URL="memory://", TASKS_RESULT_BACKEND="django://"):
        reset_cache()
        try:
            broker = get_broker()
            task_id = publish(build_message(double.name, (7,), {})).id
            worker = consumer()
            with connection.execute_wrapper(refuse_once):
                worker.process(broker.fetch(["default"], "test/1", 16, 30))
            assert refused and not worker.settler.waiting
            assert TaskResult.objects.get(task_id=task_id).state == states.SUCCESS
            counts = broker.queue_counts(["default"])["default"]
            assert (counts.ready, counts.in_flight) == (0, 0)
            worker.store.write_kept(force=True)  # type: ignore[union-attr]
            assert counted() == 1
        finally:
            reset_cache()


def test_a_flush_that_fails_after_the_one_statement_leaves_the_batch_settled(
        double: Task[Any, Any], caplog: pytest.LogCaptureFixture) -> None:
    """Ack and outcomes committed together (on PostgreSQL): a flush that fails afterwards
    does not write the batch again (which would find it acked and call the outcome refused).
    Elsewhere the batch's transaction waits for the disk and nothing is flushed."""
    from django.db import OperationalError

    store = get_result_store()
    assert store is not None
    task_id = publish(build_message(double.name, (6,), {})).id
    deliveries = get_broker().fetch(["default"], "test/1", 16, 30)

    def failing() -> None:
        raise OperationalError("the connection broke")

    store.flush = failing  # type: ignore[method-assign]
    try:
        worker = consumer()
        worker.process(deliveries)
    finally:
        del store.flush
    assert TaskResult.objects.get(task_id=task_id).state == states.SUCCESS
    assert not QueuedMessage.objects.exists() and not worker.settler.waiting
    told = [r.getMessage() for r in caplog.records if r.levelname in ("WARNING", "ERROR")]
    if ON_POSTGRES:  # the flush would have counted the run
        assert told == ["Cannot count 1 settled run(s) on the dashboard: OperationalError: "
                        "the connection broke"]
    else:
        assert told == []


@pytest.mark.parametrize("every", [0.2, 3600.0])
def test_kept_runs_are_written_when_the_worker_idles_and_when_it_stops(
        double: Task[Any, Any], monkeypatch: pytest.MonkeyPatch, every: float) -> None:
    """The runs a worker keeps back reach the counters within a wait slice of coming due
    while it idles, and as it stops, however long before they would be due."""
    import time

    from django.db import connections

    from django_tasks.results import counters

    monkeypatch.setattr(counters, "WRITE_EVERY", every)
    task_id = publish(build_message(double.name, (5,), {})).id
    stop = threading.Event()
    worker = Consumer(queues=["default"], owner="test/1", hostname="test@host", prefetch=16,
                      lease=30, stop=stop)

    def run() -> None:
        try:
            worker.run()
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (
                TaskResult.objects.filter(task_id=task_id, state=states.SUCCESS).exists()
                and (counted() or every > 1)):
            time.sleep(0.02)
        assert TaskResult.objects.get(task_id=task_id).state == states.SUCCESS
        assert counted() == (1 if every < 1 or not ON_POSTGRES else 0)
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive() and counted() == 1
