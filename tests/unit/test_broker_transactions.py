"""Transactional enqueue: nothing is visible before the caller commits, nothing after a rollback."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection, transaction

from django_tasks import durability
from django_tasks.brokers.database import DatabaseBroker
from django_tasks.brokers.memory import MemoryBroker
from django_tasks.conf import get_broker, get_result_store
from django_tasks.message import Message
from django_tasks.models import QueuedMessage, TaskResult
from django_tasks.result import AsyncResult


class Rollback(Exception):
    pass


@pytest.fixture
def noop(define: Callable[..., Any]) -> Any:
    @define(name="unit.transactions.noop")
    def noop(x: int) -> int:
        return x

    return noop


def test_the_database_alias_comes_from_the_url() -> None:
    assert DatabaseBroker("django://").database_alias == "default"
    assert DatabaseBroker("django:///").database_alias == "default"
    assert DatabaseBroker("django://replica").database_alias == "replica"
    assert DatabaseBroker("django://").capabilities.transactional is True
    assert MemoryBroker().capabilities.transactional is False


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_publish_leaves_no_row() -> None:
    broker = DatabaseBroker("django://")
    with pytest.raises(Rollback), transaction.atomic():
        broker.publish([Message(id="lost", task="t")])
        assert QueuedMessage.objects.filter(task_id="lost").exists()
        raise Rollback
    assert not QueuedMessage.objects.exists()
    assert broker.depths() == {}


@pytest.mark.django_db(transaction=True)
def test_a_committed_publish_is_one_row() -> None:
    broker = DatabaseBroker("django://")
    with transaction.atomic():
        broker.publish([Message(id="kept", task="t", queue="q", priority=4)])
    row = QueuedMessage.objects.get()
    assert (row.task_id, row.queue, row.priority, row.deliveries) == ("kept", "q", 4, 0)
    assert row.lease_owner is None
    assert Message.decode(row.body).id == "kept"


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("database_tasks")
def test_delay_in_a_rolled_back_transaction_leaves_nothing(noop: Any) -> None:
    with pytest.raises(Rollback), transaction.atomic():
        result = noop.delay(1)
        assert AsyncResult(result.id).exists()
        raise Rollback
    assert not QueuedMessage.objects.exists()
    assert not TaskResult.objects.exists()
    assert not AsyncResult(result.id).exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("database_tasks")
def test_delay_writes_the_message_and_a_pending_result(noop: Any) -> None:
    result = noop.delay(7)
    row = QueuedMessage.objects.get()
    assert row.task_id == result.id
    pending = TaskResult.objects.get()
    assert (pending.task_id, pending.state, pending.args) == (result.id, "PENDING", "[7]")
    assert result.state == "PENDING"
    assert get_broker().depths() == {"default": 1}


@pytest.mark.django_db
@pytest.mark.usefixtures("database_tasks")
def test_database_broker_and_store_are_the_defaults() -> None:
    assert isinstance(get_broker(), DatabaseBroker)
    assert type(get_result_store()).__name__ == "DatabaseResultStore"


@pytest.mark.django_db(transaction=True)
def test_publish_with_pending_is_one_statement_on_postgresql_only() -> None:
    broker = DatabaseBroker("django://")
    assert broker.publish_with_pending([]) is False
    message = Message(id="both", task="t", args=(3,), queue="q", priority=2)
    if connection.vendor != "postgresql":
        assert broker.publish_with_pending([message]) is False
        assert not QueuedMessage.objects.exists() and not TaskResult.objects.exists()
        return
    assert broker.publish_with_pending([message]) is True
    row, pending = QueuedMessage.objects.get(), TaskResult.objects.get()
    assert (row.task_id, row.queue, row.priority) == ("both", "q", 2)
    assert Message.decode(row.body).args == (3,)
    assert (pending.task_id, pending.state, pending.args, pending.queue) == (
        "both", "PENDING", "[3]", "q")


@pytest.mark.django_db(transaction=True)
def test_a_claim_commits_without_waiting_for_the_disk_on_postgresql_alone() -> None:
    """On PostgreSQL a claim on its own (autocommit) turns ``synchronous_commit`` off for its
    own transaction; the session keeps its setting. In a caller's transaction, whose commit
    it must not change, and on the other databases, the claim is written as always."""
    from django.test.utils import CaptureQueriesContext

    def setting() -> str:
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            return str(cursor.fetchone()[0])

    def claim(*, atomic: bool) -> list[str]:
        broker.publish([Message(id=f"claim-{atomic}", task="t", queue="q")])
        with CaptureQueriesContext(connection) as queries:
            if atomic:
                with transaction.atomic():
                    [delivery] = broker.fetch(["q"], "me", 10, 30)
                    if postgres:
                        assert setting() == before  # the caller's commit is left as it is
            else:
                [delivery] = broker.fetch(["q"], "me", 10, 30)
        assert broker.ack([delivery]) == [delivery]
        return [q["sql"] for q in queries.captured_queries]

    broker = DatabaseBroker("django://")
    postgres = connection.vendor == "postgresql"
    before = setting() if postgres else ""
    lazy = durability.LAZY
    [update] = [sql for sql in claim(atomic=False) if sql.startswith("UPDATE")]
    assert (lazy in update) is postgres, update
    assert not any(lazy in sql for sql in claim(atomic=True))
    if postgres:
        assert setting() == before

# -- the memory broker imitates it with on_commit ------------------------------------------


@pytest.mark.django_db
@pytest.mark.usefixtures("memory_tasks")
def test_memory_broker_publishes_on_commit(
    noop: Any, django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        noop.delay(1)
        assert get_broker().depths() == {}  # not before the commit
    assert len(callbacks) == 1
    assert get_broker().depths() == {"default": 1}


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("memory_tasks")
def test_memory_broker_drops_a_rolled_back_publish(noop: Any) -> None:
    with pytest.raises(Rollback), transaction.atomic():
        noop.delay(1)
        raise Rollback
    assert get_broker().depths() == {}
    with transaction.atomic():
        noop.delay(2)
    assert get_broker().depths() == {"default": 1}


@pytest.mark.usefixtures("memory_tasks")
def test_memory_broker_publishes_at_once_outside_a_transaction(noop: Any) -> None:
    noop.delay(1)
    assert get_broker().depths() == {"default": 1}
