"""What only the Redis broker has: its URL, its key prefix, concurrent fetches, big batches.

The contract every broker keeps runs on Redis too, in ``test_brokers.py``.
"""

from __future__ import annotations

import datetime as dt
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from django.test import override_settings

from django_tasks.brokers import redis as redis_module
from django_tasks.brokers.base import WAKE_AHEAD_SECONDS, Delivery
from django_tasks.brokers.redis import RedisBroker, RedisUnreachable
from django_tasks.conf import get_broker, reset_cache
from django_tasks.exceptions import BrokerUnreachable, ConfigurationError
from django_tasks.message import Message
from django_tasks.result import TaskOutcome
from django_tasks.results.memory import MemoryResultStore
from django_tasks.worker.settle import Settlement, Settler

from .conftest import REDIS_TEST_URL, Clock
from .conftest import flushed_redis as redis_broker


@pytest.fixture
def broker(clock: Clock) -> Iterator[RedisBroker]:
    yield from redis_broker()


def messages(count: int, queue: str = "default", eta: dt.datetime | None = None,
             tag: str = "m") -> list[Message]:
    return [Message(id=f"{tag}{i}", task="unit.redis.t", args=(i,), queue=queue, eta=eta)
            for i in range(count)]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the URL -------------------------------------------------------------------------------


def test_describe_hides_the_password_and_keeps_the_options() -> None:
    broker = RedisBroker("redis://:s3cret@127.0.0.1:6379/13?prefix=app1")
    assert broker.describe() == "redis://:**@127.0.0.1:6379/13?prefix=app1"
    assert broker.prefix == "app1"
    assert RedisBroker("rediss://user:s3cret@example.com:6380/2").describe() == \
        "rediss://user:**@example.com:6380/2"


def test_our_options_are_not_handed_to_redis_py() -> None:
    assert redis_module._split_url("redis://h:1/2?prefix=p&ssl_cert_reqs=none&spin_us=7") == (
        "redis://h:1/2?ssl_cert_reqs=none", "p", 7e-6)
    assert redis_module._split_url("redis://h:1/2") == ("redis://h:1/2", "tasks", 1e-4)
    assert redis_module._split_url("redis://h:1/2?prefix=&spin_us=") == (
        "redis://h:1/2", "tasks", 1e-4)


@pytest.mark.parametrize("value", ["-1", "1.5", "fast", "10001"])
def test_a_bad_spin_option_says_what_it_takes(value: str) -> None:
    with pytest.raises(ConfigurationError, match="spin_us= must be a whole number of "
                                                 "microseconds from 0 to 10000"):
        RedisBroker(f"redis://127.0.0.1:6379/13?spin_us={value}")


@pytest.mark.parametrize("scheme", ["redis", "rediss"])
def test_the_broker_url_setting_picks_the_redis_broker(scheme: str) -> None:
    with override_settings(TASKS_BROKER_URL=f"{scheme}://127.0.0.1:6379/13"):
        reset_cache()
        try:
            assert isinstance(get_broker(), RedisBroker)
        finally:
            reset_cache()


def test_an_unreachable_server_fails_fast_without_the_password() -> None:
    url = f"redis://:s3cret@127.0.0.1:{closed_port()}/0"
    broker = RedisBroker(url)
    started = time.monotonic()
    with pytest.raises(RedisUnreachable) as caught:
        broker.publish(messages(1))
    assert time.monotonic() - started < 2
    text = str(caught.value)
    assert "s3cret" not in text and "s3cret" not in repr(caught.value)
    assert broker.describe() in text
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert isinstance(caught.value, BrokerUnreachable)
    assert isinstance(caught.value, ConnectionError)
    with pytest.raises(RedisUnreachable):
        broker.fetch(["default"], "w1", 10, 30)


def test_an_outcome_settled_while_redis_is_down_is_kept_not_replaced() -> None:
    # The worker takes a lost broker for "not now": the outcome waits in the backlog; it is
    # not stored, and not swapped for a FAILURE saying it could not be stored.
    broker = RedisBroker(f"redis://127.0.0.1:{closed_port()}/0")
    store = MemoryResultStore()
    settler = Settler(broker, store, lease=30)
    delivery = Delivery(tag=1, body="{}", queue="default", deliveries=1, owner="w1",
                        task_id="t1", token=5)
    done = Settlement(delivery, TaskOutcome("t1", "unit.redis.t", "SUCCESS", result=2))
    settler.settle([done])
    assert settler.backlog == [done]
    assert store.get("t1") is None


# -- prefixes ------------------------------------------------------------------------------


def test_a_prefix_isolates_two_brokers_on_one_database(broker: RedisBroker) -> None:
    one = RedisBroker(f"{REDIS_TEST_URL}?prefix=one")
    two = RedisBroker(f"{REDIS_TEST_URL}?prefix=two")
    one.publish(messages(3, tag="one"))
    two.publish(messages(2, tag="two"))
    assert one.depths() == {"default": 3}
    assert two.depths() == {"default": 2}
    assert broker.depths() == {}  # the default prefix sees neither
    fetched = two.fetch(["default"], "w1", 10, 30)
    assert [Message.decode(d.body).id for d in fetched] == ["two0", "two1"]
    assert one.ack(fetched) == []  # the other prefix's tags are not one's to ack
    assert two.purge("default").count == 2
    assert one.depths() == {"default": 3}
    assert all(str(key).startswith(("one:", "two:")) for key in broker._client.keys("*"))


# -- concurrency ---------------------------------------------------------------------------


def test_due_delayed_messages_are_handed_out_once_to_concurrent_fetchers(
        broker: RedisBroker, clock: Clock) -> None:
    # Two broker instances (two pools, as on two hosts), four threads each.
    brokers = [broker, RedisBroker(REDIS_TEST_URL)]
    broker.publish(messages(200, eta=clock.now + dt.timedelta(seconds=60)))
    assert broker.fetch(["default"], "early", 10, 30) == []
    clock.advance(61)
    got: list[list[Delivery]] = [[] for _ in range(8)]
    start = threading.Barrier(8)

    def consume(index: int) -> None:
        mine = brokers[index % 2]
        start.wait()
        while batch := mine.fetch(["default"], f"w{index}", 7, 30):
            got[index] += batch

    threads = [threading.Thread(target=consume, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    delivered = [d for batch in got for d in batch]
    assert sorted(Message.decode(d.body).id for d in delivered) == sorted(
        f"m{i}" for i in range(200))
    assert {d.deliveries for d in delivered} == {1}
    assert broker.depths() == {"default": 200}  # all leased now
    assert len(broker.ack(delivered)) == 200
    assert broker.depths() == {}


def test_a_run_out_lease_is_taken_over_once_by_concurrent_fetchers(
        broker: RedisBroker, clock: Clock) -> None:
    broker.publish(messages(50))
    first = broker.fetch(["default"], "dead", 50, 10)
    clock.advance(11)
    other = RedisBroker(REDIS_TEST_URL)
    results: list[list[Delivery]] = [[], []]

    def consume(index: int) -> None:
        results[index] = (broker, other)[index].fetch(["default"], f"w{index}", 50, 30)

    threads = [threading.Thread(target=consume, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    taken = results[0] + results[1]
    assert sorted(d.tag for d in taken) == sorted(d.tag for d in first)
    assert {d.deliveries for d in taken} == {2}
    assert broker.ack(first) == []
    assert broker.release_owner("dead") == 0


# -- batches -------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [redis_module._CHUNK, 300])
def test_a_thousand_messages_in_one_batch(broker: RedisBroker, chunk: int,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # With 300 per script call, the batch is four calls in one pipeline.
    monkeypatch.setattr(redis_module, "_CHUNK", chunk)
    batch = messages(1000)
    broker.publish(batch)
    assert broker.depths(["default"]) == {"default": 1000}
    delivered = broker.fetch(["default"], "w1", 1000, 30)
    assert [Message.decode(d.body).id for d in delivered] == [m.id for m in batch]
    assert [d.task_id for d in delivered] == [m.id for m in batch]
    assert len(broker.confirm(delivered, 30)) == 1000
    assert broker.ack(delivered) == delivered
    assert broker.depths() == {}
    assert broker.ack(delivered) == []


def test_priorities_are_honoured_across_queues(broker: RedisBroker) -> None:
    broker.publish([Message(id="low", task="t", queue="a", priority=1),
                    Message(id="high", task="t", queue="b", priority=9),
                    Message(id="mid", task="t", queue="a", priority=5)])
    delivered = broker.fetch(["a", "b"], "w1", 2, 30)
    assert [Message.decode(d.body).id for d in delivered] == ["high", "mid"]


def test_a_message_published_alone_is_stored_as_one_published_in_a_batch(
        broker: RedisBroker, clock: Clock) -> None:
    """A single message has a script of its own (``PUBLISH_ONE``): the same hash, the same
    place in its queue's order, the same wake-up and queue name as in a batch."""
    client, prefix = broker._client, broker.prefix
    later = clock.now + dt.timedelta(hours=1)
    broker.publish([Message(id="alone", task="t", queue="q", priority=3)])
    broker.publish([Message(id="batch", task="t", queue="q", priority=3),
                    Message(id="first", task="t", queue="q", priority=7)])
    broker.publish([Message(id="late", task="t", queue="q", eta=later)])

    def stored(tag: str) -> dict[str, str]:
        fields = client.hgetall(f"{prefix}:m:{tag}")
        assert Message.decode(fields.pop("b")).id == fields["id"]
        return fields

    assert [stored(tag) for tag in ("1", "2", "4")] == [
        {"q": "q", "p": "3", "id": "alone", "d": "0", "r": "0"},
        {"q": "q", "p": "3", "id": "batch", "d": "0", "r": "0"},
        {"q": "q", "p": "0", "id": "late", "d": "0", "r": "0"}]
    assert client.zrange(f"{prefix}:delayed:q", 0, -1, withscores=True) == [
        ("4", later.timestamp())]
    assert client.smembers(f"{prefix}:queues") == {"q"}
    assert client.llen(f"{prefix}:wake:q") == 3  # one per ready message
    delivered = broker.fetch(["q"], "w1", 10, 30)
    assert [d.task_id for d in delivered] == ["first", "alone", "batch"]


def test_close_then_use_again_reconnects(broker: RedisBroker) -> None:
    broker.publish(messages(1))
    broker.close()
    assert broker.depths() == {"default": 1}
    assert broker.ping() is True


# -- confirming leases --------------------------------------------------------------------


def test_a_lease_taken_moments_ago_is_confirmed_without_asking_redis(
        broker: RedisBroker, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nobody claims a message before its lease has run out, so within half a lease of the
    fetch the process's own lease stands; after that, Redis is asked (and a lease that
    moved on is refused)."""
    broker.publish(messages(2))
    mine, lost = broker.fetch(["default"], "w1", 2, 10)
    scripts: list[int] = []
    real = broker._run_chunks
    monkeypatch.setattr(broker, "_run_chunks", lambda *a: (scripts.append(1), real(*a))[1])
    clock.advance(4)
    assert broker.confirm([mine, lost], 10) == [mine, lost]
    assert scripts == []
    clock.advance(7)  # past the lease: another worker claims one
    assert broker.release_owner("w1") == 2
    [claimed, _] = broker.fetch(["default"], "w2", 2, 10)
    assert broker.confirm([mine, lost], 10) == []
    assert scripts == [1]
    assert claimed.leased_until > mine.leased_until


# -- waking idle consumers -----------------------------------------------------------------


def test_a_publish_wakes_one_idle_consumer_per_due_message(broker: RedisBroker) -> None:
    assert broker.wait(["default"], 0.05) is False  # nothing published
    RedisBroker(REDIS_TEST_URL).publish(messages(1))
    assert broker.wait(["other", "default"], 30) is True
    assert broker.wait(["default"], 0.05) is False  # that token was taken


def test_a_message_delayed_by_more_than_a_second_wakes_nobody(broker: RedisBroker,
                                                               clock: Clock) -> None:
    """An idle worker learns of it on its next look, within a second."""
    RedisBroker(REDIS_TEST_URL).publish(messages(1, eta=clock.now + dt.timedelta(hours=1)))
    assert broker.wait(["default"], 0.05) is False


@pytest.mark.parametrize("count", [1, 3])
def test_a_message_due_within_a_second_wakes_one_idle_consumer(broker: RedisBroker,
                                                                clock: Clock,
                                                                count: int) -> None:
    """Which asks when it comes due: its next look by turn could be later than that."""
    soon = clock.now + dt.timedelta(seconds=WAKE_AHEAD_SECONDS / 2)
    RedisBroker(REDIS_TEST_URL).publish(messages(count, eta=soon))
    assert broker.wait(["default"], 30) is True
    assert broker.wait(["default"], 0.05) is False  # one token for them all
    assert broker.next_due(["default"], clock.now) == pytest.approx(
        WAKE_AHEAD_SECONDS / 2, abs=0.01)


@pytest.mark.parametrize("batch", [500, 1])
def test_wake_up_tokens_nobody_takes_are_bounded(broker: RedisBroker, batch: int) -> None:
    for start in range(0, 40 if batch == 1 else batch, batch):
        broker.publish(messages(batch, tag=f"m{start}-"))
    assert broker._client.llen(f"{broker.prefix}:wake:default") == 32
    broker.purge("default")
    assert broker._client.llen(f"{broker.prefix}:wake:default") == 0


def test_a_waiting_consumer_is_woken_from_another_thread(broker: RedisBroker) -> None:
    woken: list[bool | None] = []
    waiter = threading.Thread(target=lambda: woken.append(broker.wait(["default"], 30)))
    waiter.start()
    time.sleep(0.1)
    RedisBroker(REDIS_TEST_URL).publish(messages(1))
    waiter.join(timeout=30)
    assert woken == [True]


def test_an_outbox_row_published_twice_is_queued_once(broker: RedisBroker) -> None:
    first, second = messages(2)
    broker.publish_once([("outbox:1:m0", first), ("outbox:2:m1", second)])
    broker.publish_once([("outbox:1:m0", first)])  # a relay after a publisher died
    assert broker.depths() == {"default": 2}
    assert sorted(Message.decode(d.body).id for d in broker.fetch(["default"], "w", 10, 30)) \
        == ["m0", "m1"]


def test_a_fetch_run_again_with_its_tokens_answers_with_what_it_leased(
        broker: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    """redis-py sends a command again when its answer was lost: the second run of a fetch
    leases nothing more, and the first run's messages are not left with an owner that
    never saw them."""
    broker.publish(messages(5))
    bases = iter(["11", "11", "21"])
    monkeypatch.setattr(redis_module, "_token_base", lambda: next(bases))
    first = broker.fetch(["default"], "w1", 3, 30)
    again = broker.fetch(["default"], "w1", 3, 30)
    assert [(d.tag, d.token, d.deliveries) for d in again] == [
        (d.tag, d.token, d.deliveries) for d in first]
    assert [Message.decode(d.body).id for d in again] == ["m0", "m1", "m2"]
    assert [d.token for d in again] == [110001, 110002, 110003]
    counts = broker.queue_counts(["default"])["default"]
    assert (counts.ready, counts.in_flight) == (2, 3)
    rest = broker.fetch(["default"], "w1", 3, 30)  # new tokens: the next messages
    assert [Message.decode(d.body).id for d in rest] == ["m3", "m4"]
    assert [d.token for d in rest] == [210001, 210002]
    assert len(broker.ack([*first, *rest])) == 5
