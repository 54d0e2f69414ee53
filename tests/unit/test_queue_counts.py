"""``Broker.queue_counts()``: ready, delayed and in-flight messages per queue, on the memory,
database and Redis brokers (one contract, a frozen clock) and on RabbitMQ (ready from the
server, delayed from the outbox, in flight not known).

Redis and RabbitMQ tests are skipped where the server does not run and fail under CI=true.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from django_tasks import outbox
from django_tasks.brokers.amqp import AmqpBroker
from django_tasks.brokers.base import Broker, QueueCounts
from django_tasks.brokers.database import DatabaseBroker
from django_tasks.brokers.redis import RedisBroker
from django_tasks.message import Message

from . import test_amqp_broker as amqp
from .conftest import REDIS_TEST_URL as REDIS_URL
from .conftest import Clock
from .conftest import flushed_redis as redis_broker
from .test_brokers import LEASE, fetch, publish

HOUR = dt.timedelta(hours=1)


def test_nothing_queued_counts_zero_for_the_queues_named(any_broker: Broker) -> None:
    assert any_broker.queue_counts() == {}
    assert any_broker.queue_counts(["default", "mail"]) == {
        "default": QueueCounts(0, 0, 0), "mail": QueueCounts(0, 0, 0)}


def test_ready_delayed_and_in_flight_per_queue(any_broker: Broker, clock: Clock) -> None:
    for _ in range(3):
        publish(any_broker)
    publish(any_broker, eta=clock.now + HOUR)
    publish(any_broker, queue="mail", eta=clock.now + HOUR)
    publish(any_broker, queue="other")
    fetch(any_broker, limit=2)
    counts = any_broker.queue_counts(["default", "empty"])
    # Named queues are there with zeros; a queue with messages is there without being named.
    assert counts == {"default": QueueCounts(ready=1, delayed=1, in_flight=2),
                      "mail": QueueCounts(ready=0, delayed=1, in_flight=0),
                      "other": QueueCounts(ready=1, delayed=0, in_flight=0),
                      "empty": QueueCounts(0, 0, 0)}
    assert counts["default"].total == any_broker.depths(["default"])["default"] == 4


def test_a_delayed_message_counts_as_ready_once_due(any_broker: Broker, clock: Clock) -> None:
    publish(any_broker, eta=clock.now + dt.timedelta(seconds=10))
    assert any_broker.queue_counts()["default"] == QueueCounts(0, 1, 0)
    clock.advance(11)  # nothing fetched: Redis has not moved it to its ready set yet
    assert any_broker.queue_counts()["default"] == QueueCounts(1, 0, 0)


def test_a_lease_that_ran_out_counts_as_ready(any_broker: Broker, clock: Clock) -> None:
    publish(any_broker)
    fetch(any_broker, owner="frozen")
    assert any_broker.queue_counts()["default"] == QueueCounts(0, 0, 1)
    clock.advance(LEASE - 1)
    any_broker.renew(["frozen"], LEASE)  # a live worker keeps it in flight
    clock.advance(LEASE - 1)
    assert any_broker.queue_counts()["default"] == QueueCounts(0, 0, 1)
    clock.advance(2)  # its worker stopped renewing: another one may take it now
    assert any_broker.queue_counts()["default"] == QueueCounts(1, 0, 0)


def test_a_retry_waiting_for_its_backoff_is_delayed(any_broker: Broker) -> None:
    publish(any_broker)
    [delivery] = fetch(any_broker)
    any_broker.requeue(delivery, Message.decode(delivery.body).replace(retries=1), 60)
    assert any_broker.queue_counts()["default"] == QueueCounts(0, 1, 0)
    assert fetch(any_broker) == []


def test_a_rate_limited_message_waiting_for_its_slot_is_delayed(any_broker: Broker) -> None:
    publish(any_broker)
    [delivery] = fetch(any_broker)
    any_broker.defer(delivery, Message.decode(delivery.body), 30)
    assert any_broker.queue_counts()["default"] == QueueCounts(0, 1, 0)


def test_acked_and_purged_messages_are_gone(any_broker: Broker) -> None:
    publish(any_broker)
    publish(any_broker, queue="mail")
    any_broker.ack(fetch(any_broker))
    any_broker.purge("mail")
    assert any_broker.queue_counts() == {}
    assert any_broker.queue_counts(["mail"]) == {"mail": QueueCounts(0, 0, 0)}


@pytest.mark.django_db
def test_the_database_broker_counts_in_one_query_whatever_the_rows(clock: Clock) -> None:
    broker = DatabaseBroker("django://")
    publish(broker)
    with CaptureQueriesContext(connection) as few:
        broker.queue_counts(["default"])
    for i in range(50):
        publish(broker, queue=f"q{i % 5}", eta=clock.now + HOUR if i % 2 else None)
    fetch(broker, queues=["q0", "q1"], limit=7)
    with CaptureQueriesContext(connection) as many:
        counts = broker.queue_counts(["default"])
    assert len(few) == len(many) == 1
    assert sum(c.total for c in counts.values()) == 51
    assert sum(c.in_flight or 0 for c in counts.values()) == 7


@pytest.fixture
def redis(clock: Clock) -> Iterator[RedisBroker]:
    yield from redis_broker(REDIS_URL)


def test_redis_counts_in_one_round_trip(redis: RedisBroker, clock: Clock) -> None:
    for i in range(20):
        publish(redis, queue=f"q{i % 4}", eta=clock.now + HOUR if i % 2 else None)
    calls: list[Any] = []
    real_command, real_script = redis._client.execute_command, redis._lane.call

    def command(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[0])
        return real_command(*args, **kwargs)

    def script(*args: Any, **kwargs: Any) -> Any:
        calls.append("EVALSHA")
        return real_script(*args, **kwargs)

    redis._client.execute_command = command  # type: ignore[method-assign]
    redis._lane.call = script  # type: ignore[method-assign]
    counts = redis.queue_counts(["default"])
    assert calls == ["EVALSHA"]
    assert counts["default"] == QueueCounts(0, 0, 0)
    assert counts["q0"] == QueueCounts(5, 0, 0) and counts["q1"] == QueueCounts(0, 5, 0)


def test_redis_keys_of_another_prefix_are_not_counted(redis: RedisBroker) -> None:
    other = RedisBroker(REDIS_URL + "?prefix=other")
    try:
        publish(other)
        assert redis.queue_counts() == {}
        assert other.queue_counts() == {"default": QueueCounts(1, 0, 0)}
    finally:
        other.close()


# -- RabbitMQ: ready from the server, delayed from the outbox, in flight not known -----------

@pytest.fixture
def rabbit(created: list[str]) -> Iterator[AmqpBroker]:
    yield from amqp._make(amqp.URL, created)


@pytest.fixture
def created() -> list[str]:
    return []


def _queue(created: list[str]) -> str:
    name = f"test-{uuid.uuid4().hex[:12]}"
    created.append(name)
    return name


@pytest.mark.django_db
def test_rabbitmq_ready_delayed_and_in_flight_not_known(rabbit: AmqpBroker,
                                                        created: list[str]) -> None:
    queue, idle = _queue(created), _queue(created)
    rabbit.publish([amqp.message(queue) for _ in range(3)])
    later = dt.datetime.now(dt.UTC) + HOUR
    outbox.hold([amqp.message(queue).replace(eta=later) for _ in range(2)], rabbit.home_alias)
    assert rabbit.queue_counts([queue, idle]) == {
        queue: QueueCounts(ready=3, delayed=2, in_flight=None),
        idle: QueueCounts(ready=0, delayed=0, in_flight=None)}
    consumer = AmqpBroker(amqp.URL + "?prefetch=1")
    try:
        # Sent to a consumer and unacked: no longer ready, and RabbitMQ will not say more.
        # (With a larger prefetch, more are sent ahead, and leave ready too.)
        assert len(amqp.fetch(consumer, queue, limit=1, want=1)) == 1
        assert rabbit.queue_counts([queue])[queue] == QueueCounts(2, 2, None)
    finally:
        consumer.close()
    deadline = time.monotonic() + 5  # back in the queue once the server sees it closed
    while rabbit.queue_counts([queue])[queue].ready < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert rabbit.queue_counts([queue])[queue] == QueueCounts(3, 2, None)


@pytest.mark.django_db
def test_rabbitmq_finds_queues_it_was_not_asked_about(rabbit: AmqpBroker,
                                                      created: list[str]) -> None:
    published, held = _queue(created), _queue(created)
    rabbit.publish([amqp.message(published)])  # declared by this process
    outbox.hold([amqp.message(held).replace(eta=dt.datetime.now(dt.UTC) + HOUR)],
                rabbit.home_alias)
    counts = rabbit.queue_counts()
    assert counts[published] == QueueCounts(1, 0, None)
    assert counts[held] == QueueCounts(0, 1, None)  # not on the server yet at all
