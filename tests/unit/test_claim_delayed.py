"""The database broker's claim reads the due rows it takes, not the delayed ones.

In the queue index (queue, priority, visible_at, id) a due row of one priority stands after
the delayed and leased rows of every priority above it, and a claim that finds fewer due
rows than it asks for (an idle look, the end of a queue) used to read every delayed row of
its queue: 9-13 ms a claim on PostgreSQL with 100,000 countdown tasks waiting. Now each
priority is read on its own, where its due rows are one range of the index; rows keep a
priority of 0-9 for that (another is taken as the nearest)."""

from __future__ import annotations

import datetime as dt
import importlib
import json
import re
import uuid
from types import SimpleNamespace
from typing import Any

import pytest
from django.apps import apps
from django.db import connection, transaction

from django_tasks import clock
from django_tasks.brokers.database import DatabaseBroker, _due_ids
from django_tasks.message import Message
from django_tasks.models import QueuedMessage

pytestmark = [pytest.mark.django_db(transaction=True),
              pytest.mark.usefixtures("database_tasks")]

QUEUE = "default"


def publish(broker: DatabaseBroker, priority: int, *, eta: dt.datetime | None = None,
            queue: str = QUEUE) -> str:
    message = Message(id=str(uuid.uuid4()), task="unit.claim.delayed", queue=queue,
                      priority=priority, eta=eta)
    broker.publish([message])
    return message.id


def waiting(count: int, priorities: tuple[int, ...] = (0, 9), start: int = 0,
            queue: str = QUEUE) -> None:
    """``count`` countdown rows an hour away and ``count`` leases of a live worker, spread
    over ``priorities``: rows an index read in priority order passes before it is done."""
    now = clock.now()
    QueuedMessage.objects.bulk_create([
        QueuedMessage(queue=queue, priority=priorities[i % len(priorities)],
                      task_id=f"waiting-{i}", body="{}", created_at=now,
                      visible_at=now + dt.timedelta(hours=1, milliseconds=i),
                      lease_owner="other/1" if i % 2 else None,
                      lease_token=i if i % 2 else None)
        for i in range(start, start + 2 * count)], batch_size=1000)


def claim_statement(broker: DatabaseBroker, limit: int = 16,
                    queues: tuple[str, ...] = (QUEUE,)) -> tuple[str, Any]:
    """The read a fetch claims with: on PostgreSQL and SQLite the query of the ids its
    ``UPDATE`` takes (the ``UPDATE`` around it finds them by id), on MySQL and MariaDB the
    locking read before the ``UPDATE`` (captured from a fetch rolled back)."""
    if connection.vendor in ("postgresql", "sqlite"):
        table = connection.ops.quote_name(QueuedMessage._meta.db_table)
        now = connection.ops.adapt_datetimefield_value(clock.now())
        return _due_ids(connection.vendor, table, queues, now, limit)
    sent: list[tuple[str, Any]] = []

    def watch(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if "FOR UPDATE SKIP LOCKED" in sql:
            sent.append((sql, params))
        return execute(sql, params, many, context)

    with transaction.atomic(), connection.execute_wrapper(watch):
        broker.fetch(list(queues), "test/1", limit, 30)
        transaction.set_rollback(True)
    assert sent, "no claim was sent"
    return sent[0]


def blocks_read(sql: str, params: Any) -> int:
    """PostgreSQL: the buffers the statement touched, by ``EXPLAIN (ANALYZE, BUFFERS)``."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql, params)
        found = cursor.fetchone()[0]
        transaction.set_rollback(True)
    plan = (json.loads(found) if isinstance(found, str) else found)[0]["Plan"]
    return int(plan["Shared Hit Blocks"]) + int(plan["Shared Read Blocks"])


def unbounded_searches(sql: str, params: Any) -> list[str]:
    """SQLite: the reads of the queue table whose index range is not bounded by
    ``visible_at`` (they read on through the delayed rows)."""
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN QUERY PLAN " + sql, params)
        details = [row[-1] for row in cursor.fetchall()]
    reads = [d for d in details if re.match(r"(SEARCH|SCAN) django_tasks_queuedmessage", d)
             and "PRIMARY KEY" not in d]
    assert reads, details
    return [d for d in reads if "visible_at<" not in d]


def rows_read(sql: str, params: Any) -> int:
    """MariaDB: the rows the statement read, by ``ANALYZE FORMAT=JSON``."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("ANALYZE FORMAT=JSON " + sql, params)
        found = cursor.fetchone()[0]
        transaction.set_rollback(True)
    return sum(int(float(n)) for n in re.findall(r'"r_rows": ([0-9.]+)', found))


def test_a_claim_reads_no_delayed_rows() -> None:
    broker = DatabaseBroker("django://")
    for priority in (0, 0, 5):
        publish(broker, priority)
    if connection.vendor == "postgresql":
        waiting(1000)
        before = blocks_read(*claim_statement(broker))
        waiting(4000, start=2000)
        after = blocks_read(*claim_statement(broker))
        # Walking 8,000 more index entries reads some 40 pages more; the probes read the
        # same pages, however many rows wait (once the index is a few pages deep).
        assert after - before < 10, (before, after)
    elif connection.vendor == "sqlite":
        waiting(100)
        assert unbounded_searches(*claim_statement(broker)) == []
        # Several queues list the priorities (priority IN (0, ..., 9)): a range each. On
        # PostgreSQL that is the planner's choice, by the table's statistics.
        assert unbounded_searches(*claim_statement(broker, queues=(QUEUE, "mail"))) == []
    elif connection.mysql_is_mariadb:
        waiting(1000)
        assert rows_read(*claim_statement(broker)) < 20  # the 3 due, not 2,000 more
        assert rows_read(*claim_statement(broker, queues=(QUEUE, "mail"))) < 20
    else:
        pytest.skip("MySQL reports the rows a statement read as EXPLAIN ANALYZE's text; the "
                    "claim's read is MariaDB's (priority IN (0, ..., 9)), checked there")


@pytest.mark.parametrize("queues", [[QUEUE], [QUEUE, "mail"]])
@pytest.mark.parametrize("limit", [1, 2, 16])
def test_among_delayed_rows_the_due_ones_come_by_priority_then_in_order(
        limit: int, queues: list[str]) -> None:
    """Higher priority first, whatever the queue, then the earliest due, then publish
    order, with rows waiting in every queue."""
    broker = DatabaseBroker("django://")
    for queue in queues:
        waiting(50, priorities=(9, 5, 0), queue=queue, start=len(queue) * 1000)
    calls = [(0, 0), (9, 1), (0, 1), (5, 0), (9, 0), (5, 1)]
    published = [publish(broker, p, queue=queues[q % len(queues)]) for p, q in calls]
    expected = [published[i] for i in (1, 4, 3, 5, 0, 2)]
    taken: list[str] = []
    while got := broker.fetch(queues, "test/1", limit, 30):
        taken += [d.task_id for d in got]
        broker.ack(got)
    assert taken == expected


def test_a_priority_outside_0_to_9_is_kept_as_the_nearest() -> None:
    """A ``Message`` built by hand may carry any priority (``apply_async()`` takes 0-9); a
    queue row holds 0-9 (the claim reads those), so 200 is taken as 9 and -3 as 0, in
    publish order."""
    broker = DatabaseBroker("django://")
    low, top, nine, zero = (publish(broker, p) for p in (-3, 200, 9, 0))
    assert sorted(QueuedMessage.objects.values_list("priority", flat=True)) == [0, 0, 9, 9]
    got = broker.fetch([QUEUE], "test/1", 16, 30)
    assert [d.task_id for d in got] == [top, nine, low, zero]


def test_rows_from_before_the_range_are_brought_into_it() -> None:
    """A row written before the broker kept priorities in range: the migration makes it 9,
    and the claim takes it."""
    now = clock.now()
    QueuedMessage.objects.create(queue=QUEUE, priority=200, task_id="old", body="{}",
                                 visible_at=now, created_at=now)
    migration = importlib.import_module(
        "django_tasks.migrations.0016_queue_priorities_in_range")
    migration.clamp(apps, SimpleNamespace(connection=connection))
    assert QueuedMessage.objects.get(task_id="old").priority == 9
    got = DatabaseBroker("django://").fetch([QUEUE], "test/1", 16, 30)
    assert [d.task_id for d in got] == ["old"]
