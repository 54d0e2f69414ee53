"""The outbox: ``delay()`` in a transaction on a broker that cannot join it.

The broker here is the memory broker declared durable and not transactional, as Redis and
RabbitMQ are; the tests commit for real (``transaction=True``), so ``on_commit`` hooks run
as they do in a web request.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import ClassVar

import pytest
from django.db import connection, transaction
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from django_tasks import conf, outbox, shared_task
from django_tasks.brokers.base import Capabilities
from django_tasks.brokers.memory import MemoryBroker
from django_tasks.conf import get_broker, reset_cache
from django_tasks.message import Message, origin, origin_of
from django_tasks.models import OutboxMessage, TaskResult
from django_tasks.worker import heartbeat

from .conftest import Clock

pytestmark = pytest.mark.django_db(transaction=True)


class OutsideBroker(MemoryBroker):
    """A broker outside the database, like Redis: durable, not transactional; it can be
    made to fail as a broker that is down does."""

    capabilities: ClassVar[Capabilities] = Capabilities(transactional=False, durable=True)
    down = False

    def publish(self, messages: Sequence[Message]) -> None:
        if self.down:
            raise ConnectionError("broker is down")
        super().publish(messages)

    def publish_once(self, keyed: Sequence[tuple[str, Message]]) -> None:
        self.keys.extend(key for key, _ in keyed)
        super().publish_once(keyed)

    @property
    def keys(self) -> list[str]:
        if not hasattr(self, "_keys"):
            self._keys: list[str] = []
        return self._keys

    def queued_ids(self) -> list[str]:
        return [Message.decode(row.body).id for _, row in sorted(self._rows.items())]


@shared_task(name="unit.outbox.add")
def add(a: int, b: int) -> int:
    return a + b


def configured(monkeypatch: pytest.MonkeyPatch, cls: type[OutsideBroker],
               ) -> Iterator[OutsideBroker]:
    """``cls`` as the configured broker (its own URL scheme), results in the database."""
    scheme = cls.__name__.lower()
    monkeypatch.setitem(conf.BROKER_CLASSES, scheme, f"{__name__}.{cls.__name__}")
    with override_settings(TASKS_BROKER_URL=f"{scheme}://", TASKS_RESULT_BACKEND="django://",
                           TASKS_ALWAYS_EAGER=False):
        reset_cache()
        broker = get_broker()
        assert isinstance(broker, cls)
        yield broker
    reset_cache()


@pytest.fixture
def broker(monkeypatch: pytest.MonkeyPatch) -> Iterator[OutsideBroker]:
    yield from configured(monkeypatch, OutsideBroker)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """Here the outbox's clock is frozen too (``django_tasks.clock``)."""
    frozen = Clock()
    monkeypatch.setattr("django_tasks.clock.now", frozen)
    return frozen


def test_a_commit_publishes_what_the_transaction_queued(broker: OutsideBroker) -> None:
    with transaction.atomic():
        result = add.delay(1, 2)
        assert result.id  # known at once
        assert broker.queued_ids() == []  # nothing before the commit
        assert list(OutboxMessage.objects.values_list("task_id", flat=True)) == [result.id]
    assert broker.queued_ids() == [result.id]
    assert not OutboxMessage.objects.exists()
    assert TaskResult.objects.get(task_id=result.id).state == "PENDING"


def test_a_rollback_publishes_nothing_and_leaves_nothing(broker: OutsideBroker) -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        add.delay(1, 2)
        raise RuntimeError
    assert broker.queued_ids() == []
    assert not OutboxMessage.objects.exists()
    assert not TaskResult.objects.exists()


def test_a_savepoint_rollback_drops_only_its_own_messages(broker: OutsideBroker) -> None:
    with transaction.atomic():
        kept = add.delay(1, 1)
        with pytest.raises(RuntimeError), transaction.atomic():
            add.delay(2, 2)
            raise RuntimeError
    assert broker.queued_ids() == [kept.id]
    assert not OutboxMessage.objects.exists()


def test_outside_a_transaction_the_broker_gets_it_directly(broker: OutsideBroker) -> None:
    with CaptureQueriesContext(connection) as queries:
        result = add.delay(3, 4)
    assert broker.queued_ids() == [result.id]
    assert not any("outboxmessage" in q["sql"] for q in queries.captured_queries)
    # The broker holds the message: on PostgreSQL, its PENDING row's commit does not wait
    # for the disk (nor does that outlast the statement).
    [insert] = [q["sql"] for q in queries.captured_queries if "taskresult" in q["sql"]]
    assert ("synchronous_commit" in insert) is (connection.vendor == "postgresql"), insert


def test_a_broker_that_lives_in_the_process_needs_no_outbox(monkeypatch: pytest.MonkeyPatch,
                                                            ) -> None:
    with override_settings(TASKS_BROKER_URL="memory://", TASKS_RESULT_BACKEND="django://",
                           TASKS_ALWAYS_EAGER=False):
        reset_cache()
        try:
            with transaction.atomic():
                add.delay(1, 2)
                assert not OutboxMessage.objects.exists()
        finally:
            reset_cache()


def test_a_broker_down_at_commit_leaves_the_row_for_the_relay(
        broker: OutsideBroker, clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    broker.down = True
    with caplog.at_level(logging.WARNING, "django_tasks.outbox"), transaction.atomic():
        result = add.delay(5, 6)
    assert "stay in the outbox" in caplog.text  # the request itself did not fail
    broker.down = False
    clock.advance(1)
    assert outbox.relay(broker, "default") == 0  # its own process may still publish it
    clock.advance(outbox.CLAIM.total_seconds() + 1)
    assert outbox.relay(broker, "default") == 1
    assert broker.queued_ids() == [result.id]
    assert outbox.relay(broker, "default") == 0
    assert not OutboxMessage.objects.exists()


def test_a_process_that_died_after_its_commit_is_covered_by_a_worker(
        broker: OutsideBroker, clock: Clock) -> None:
    # The commit hook never ran: the row is there, unclaimed.
    message = Message(id="orphan", task="unit.outbox.add", args=(1, 2))
    OutboxMessage.objects.create(task_id="orphan", queue="default", body=message.encode(),
                                 created_at=clock.now)
    heartbeat.relay_outbox(broker)
    assert broker.queued_ids() == []  # younger than the grace
    clock.advance(outbox.GRACE.total_seconds() + 1)
    heartbeat.relay_outbox(broker)
    assert broker.queued_ids() == ["orphan"]
    assert not OutboxMessage.objects.exists()


def test_a_claimed_row_is_not_published_by_anyone_else(broker: OutsideBroker,
                                                      clock: Clock) -> None:
    for i in range(3):
        OutboxMessage.objects.create(task_id=f"m{i}", queue="default", created_at=clock.now,
                                     body=Message(id=f"m{i}", task="unit.outbox.add").encode())
    clock.advance(outbox.GRACE.total_seconds() + 1)
    inner: list[int] = []
    publish = broker.publish

    def publish_while_another_relay_runs(messages: Sequence[Message]) -> None:
        inner.append(outbox.relay(broker, "default"))  # a second worker, at the same time
        publish(messages)

    broker.publish = publish_while_another_relay_runs  # type: ignore[method-assign]
    assert outbox.relay(broker, "default") == 3
    assert inner == [0]
    assert sorted(broker.queued_ids()) == ["m0", "m1", "m2"]


def test_a_publisher_that_died_holding_a_claim_is_replaced_when_the_claim_runs_out(
        broker: OutsideBroker, clock: Clock) -> None:
    OutboxMessage.objects.create(task_id="held", queue="default", created_at=clock.now,
                                 claim=7, claimed_until=clock.now + outbox.CLAIM,
                                 body=Message(id="held", task="unit.outbox.add").encode())
    clock.advance(outbox.GRACE.total_seconds() + 1)
    assert outbox.relay(broker, "default") == 0
    clock.advance(outbox.CLAIM.total_seconds())
    assert outbox.relay(broker, "default") == 1
    assert broker.queued_ids() == ["held"]


def test_a_claim_names_the_process_that_holds_it(broker: OutsideBroker) -> None:
    broker.down = True
    with transaction.atomic():
        add.delay(1, 2)
    row = OutboxMessage.objects.get()
    assert row.claimed_until is not None  # the commit hook claimed it, then failed
    assert row.claimed_by == origin()


def test_the_claims_of_a_pool_process_that_died_end_at_once(broker: OutsideBroker,
                                                             clock: Clock) -> None:
    """A worker's supervisor ends the claims of a pool process that died: its rows go out
    with the next relay, not when the claims run out; another process's claim holds."""
    for task_id, pid in (("dead", 4242), ("alive", 4243)):
        OutboxMessage.objects.create(
            task_id=task_id, queue="default", created_at=clock.now, claim=pid,
            claimed_until=clock.now + outbox.CLAIM, claimed_by=origin_of(pid),
            body=Message(id=task_id, task="unit.outbox.add").encode())
    heartbeat.release_outbox_claims(broker, 4242)
    assert outbox.relay(broker, "default") == 1
    assert broker.queued_ids() == ["dead"]
    assert list(OutboxMessage.objects.values_list("task_id", flat=True)) == ["alive"]


def test_a_broker_in_the_database_has_no_claims_to_end(monkeypatch: pytest.MonkeyPatch,
                                                        broker: OutsideBroker) -> None:
    monkeypatch.setattr(broker, "capabilities", Capabilities(transactional=True))
    with CaptureQueriesContext(connection) as queries:
        heartbeat.release_outbox_claims(broker, 4242)
    assert not queries.captured_queries


def test_many_messages_in_one_transaction_are_published_together(broker: OutsideBroker,
                                                                 ) -> None:
    with transaction.atomic():
        ids = [add.delay(i, i).id for i in range(50)]
    assert sorted(broker.queued_ids()) == sorted(ids)
    assert not OutboxMessage.objects.exists()


# -- delayed messages, for a broker that cannot delay ------------------------------------------


class NoDelayBroker(OutsideBroker):
    """Like AMQP: no leases of its own and no delays."""

    capabilities: ClassVar[Capabilities] = Capabilities(
        transactional=False, durable=True, native_delays=False, leases=False)


@pytest.fixture
def no_delay_broker(monkeypatch: pytest.MonkeyPatch) -> Iterator[OutsideBroker]:
    yield from configured(monkeypatch, NoDelayBroker)


def test_a_countdown_waits_in_the_database_until_due(no_delay_broker: OutsideBroker,
                                                     clock: Clock) -> None:
    later = add.apply_async((1, 2), countdown=60)
    now = add.delay(3, 4)  # due at once: straight to the broker
    assert no_delay_broker.queued_ids() == [now.id]
    [row] = OutboxMessage.objects.all()
    assert row.task_id == later.id and row.due_at is not None
    assert TaskResult.objects.get(task_id=later.id).state == "PENDING"
    assert outbox.relay(no_delay_broker, "default") == 0
    clock.advance(61)
    heartbeat.relay_outbox(no_delay_broker)
    assert no_delay_broker.queued_ids() == [now.id, later.id]
    assert not OutboxMessage.objects.exists()


def test_the_relay_runs_again_when_the_first_held_message_comes_due(
        no_delay_broker: OutsideBroker, clock: Clock) -> None:
    """Not a whole ``RELAY_SECONDS`` later: a countdown starts on time on RabbitMQ too."""
    assert heartbeat.relay_outbox(no_delay_broker) == heartbeat.RELAY_SECONDS  # none held
    soon = add.apply_async((1, 2), countdown=0.4)
    add.apply_async((3, 4), countdown=30)
    assert heartbeat.relay_outbox(no_delay_broker) == pytest.approx(
        0.4 + heartbeat.RELAY_MARGIN_SECONDS)
    clock.advance(0.4)
    assert heartbeat.relay_outbox(no_delay_broker) == heartbeat.RELAY_SECONDS  # 29.6 s
    assert no_delay_broker.queued_ids() == [soon.id]


def test_a_message_that_came_due_while_the_relay_ran_is_relayed_at_once(
        no_delay_broker: OutsideBroker, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    """Due after the relay read the rows, before it asked what comes due next: it is not
    left for the message after it (nor for the next second)."""
    relay = outbox.relay

    def slow_relay(*args: object, **kwargs: object) -> int:
        published = relay(*args, **kwargs)  # type: ignore[arg-type]
        clock.advance(1.0)
        return published

    monkeypatch.setattr(outbox, "relay", slow_relay)
    caught = add.apply_async((1, 2), countdown=0.5)
    add.apply_async((3, 4), countdown=30)
    assert heartbeat.relay_outbox(no_delay_broker) == heartbeat.RELAY_MARGIN_SECONDS
    heartbeat.relay_outbox(no_delay_broker)
    assert no_delay_broker.queued_ids() == [caught.id]


def test_a_relay_that_found_a_full_batch_due_runs_again_at_once(
        no_delay_broker: OutsideBroker, clock: Clock) -> None:
    OutboxMessage.objects.bulk_create([
        OutboxMessage(task_id=f"held{i}", queue="default", created_at=clock.now,
                      due_at=clock.now, body=Message(id=f"held{i}", task="unit.outbox.add",
                                                      args=(i, i)).encode())
        for i in range(outbox.BATCH + 1)])
    assert heartbeat.relay_outbox(no_delay_broker) == 0.0
    assert heartbeat.relay_outbox(no_delay_broker) == heartbeat.RELAY_SECONDS
    assert len(no_delay_broker.queued_ids()) == outbox.BATCH + 1


def test_a_delayed_message_in_a_rolled_back_transaction_is_never_published(
        no_delay_broker: OutsideBroker, clock: Clock) -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        add.apply_async((1, 2), countdown=5)
        raise RuntimeError
    clock.advance(10)
    assert outbox.relay(no_delay_broker, "default") == 0
    assert no_delay_broker.queued_ids() == []


def test_a_row_published_again_after_its_publisher_died_carries_the_same_key(
        broker: OutsideBroker, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    """So that a broker that remembers keys (Redis) queues it once."""
    def delete_fails(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the publisher died before its DELETE")

    with monkeypatch.context() as patched:
        patched.setattr("django.db.models.query.QuerySet.delete", delete_fails)
        with transaction.atomic():
            result = add.delay(1, 2)
    assert OutboxMessage.objects.filter(claim__isnull=False).count() == 1
    clock.advance(outbox.CLAIM.total_seconds() + 1)
    assert outbox.relay(broker, "default") == 1
    [first, again] = broker.keys
    assert first == again and result.id in first
