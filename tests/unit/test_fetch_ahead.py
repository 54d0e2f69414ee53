"""A consumer running a batch of quick tasks sends the next batch's fetch before the batch
ends (``worker/ahead.py``), on a broker that can (``capabilities.pipelined``: Redis).

The consumer's side runs on the memory broker, given a ``start_fetch`` that leases when it is
sent and answers when the test says; the Redis broker's own ``start_fetch`` on a real Redis.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from django_tasks import shared_task, states
from django_tasks.brokers.base import Delivery
from django_tasks.brokers.redis import RedisBroker
from django_tasks.conf import get_broker, get_result_store
from django_tasks.message import Message
from django_tasks.registry import registry
from django_tasks.task import build_message
from django_tasks.worker import ahead as ahead_module
from django_tasks.worker import supervisor
from django_tasks.worker.consumer import Consumer

from .conftest import flushed_redis

ran: list[object] = []
giving_back: list[Consumer] = []  # the consumer whose supervisor the long task plays


@shared_task(name="unit.ahead.quick")
def quick(value: object) -> None:
    ran.append(value)


@shared_task(name="unit.ahead.long")
def long_task() -> None:
    """Runs past the hold time: its supervisor hands back what waits behind it."""
    ran.append("long")
    consumer = giving_back[0]
    supervisor.give_back_waiting(consumer.owner, consumer.slot)


def teardown_module() -> None:
    registry.unregister("unit.ahead.quick")
    registry.unregister("unit.ahead.long")
    registry.unregister("unit.ahead.nap")


class Sent:
    """A fetch sent ahead on the memory broker: it leases when sent, as Redis does, and its
    answer comes when ``arrived`` says."""

    def __init__(self, deliveries: list[Delivery], arrived: bool, error: Exception | None
                 ) -> None:
        self.deliveries, self.arrived, self.error = deliveries, arrived, error

    def ready(self) -> bool:
        return self.arrived

    def result(self) -> list[Delivery]:
        if self.error is not None:
            raise self.error
        return self.deliveries


@dataclasses.dataclass
class AheadBroker:
    """What the fixture records of the fetches sent ahead, and how they answer."""

    asked: list[int] = dataclasses.field(default_factory=list)
    arrived: bool = True
    error: Exception | None = None


@pytest.fixture
def fetching_ahead(memory_tasks: None, monkeypatch: pytest.MonkeyPatch
                   ) -> Iterator[AheadBroker]:
    ran.clear()
    giving_back.clear()
    monkeypatch.setattr(ahead_module, "LOOK_SECONDS", 0.0)
    broker = get_broker()
    vars(broker)["capabilities"] = dataclasses.replace(broker.capabilities, pipelined=True)
    state = AheadBroker()

    def start_fetch(queues: list[str], owner: str, limit: int, lease: float, *,
                    look: str | None = None) -> Sent:
        state.asked.append(limit)
        error, state.error = state.error, None
        return Sent(broker.fetch(queues, owner, limit, lease), state.arrived, error)

    monkeypatch.setattr(broker, "start_fetch", start_fetch)
    yield state


def consumer(stop: threading.Event | None = None, prefetch: int = 32) -> Consumer:
    return Consumer(queues=["default"], owner="ahead/1", hostname="test@host",
                    prefetch=prefetch, lease=30, stop=stop or threading.Event())


def publish(count: int, task: str = "unit.ahead.quick", first: int = 0) -> list[str]:
    messages = [build_message(task, (first + i,) if task == "unit.ahead.quick" else (), {})
                for i in range(count)]
    get_broker().publish(messages)
    return [m.id for m in messages]


def run_until(worker: Consumer, done: Callable[[], bool]) -> None:
    thread = threading.Thread(target=worker.run)
    thread.start()
    deadline = time.monotonic() + 20
    while not done() and time.monotonic() < deadline:
        time.sleep(0.01)
    worker.stop.set()  # type: ignore[attr-defined]
    thread.join(timeout=10)
    assert not thread.is_alive()


def test_quick_batches_fetch_the_next_one_ahead_and_run_every_message_once(
        fetching_ahead: AheadBroker) -> None:
    ids = publish(300)
    run_until(consumer(), lambda: len(ran) >= 300 and not get_broker().depths(["default"])
              .get("default"))
    assert sorted(ran) == list(range(300))  # each once
    assert all(get_result_store().get(i).state == states.SUCCESS for i in ids)
    assert get_broker().depths(["default"]) == {"default": 0}
    # batches of 1, 2, 4 and 8 wait for their fetch; from 16 on the next is sent ahead
    assert fetching_ahead.asked and set(fetching_ahead.asked) == {32}


def test_what_was_fetched_ahead_is_handed_back_with_the_batch_behind_a_long_task(
        fetching_ahead: AheadBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(supervisor, "HOLD_SECONDS", 0.0)
    publish(15)
    publish(1, "unit.ahead.long")
    behind = publish(10, first=100)
    worker = consumer()
    giving_back.append(worker)
    worker._batch = 16
    worker.process(get_broker().fetch(["default"], worker.owner, 16, 30))
    assert ran == [*range(15), "long"]
    assert fetching_ahead.asked == [32]
    assert worker._ahead is not None and worker._ahead.result() == []  # all given back
    again = get_broker().fetch(["default"], "other/1", 32, 30)
    assert [d.task_id for d in again] == behind
    assert {d.deliveries for d in again} == {1}  # handing back did not count


def test_an_answer_not_come_by_the_batch_end_is_read_by_the_next_fetch(
        fetching_ahead: AheadBroker) -> None:
    fetching_ahead.arrived = False
    publish(40)
    run_until(consumer(), lambda: len(ran) >= 40)
    assert sorted(ran) == list(range(40))
    assert fetching_ahead.asked


def test_stopping_hands_back_what_was_fetched_ahead_uncounted(
        fetching_ahead: AheadBroker) -> None:
    publish(16)
    behind = publish(5, first=100)
    worker = consumer()
    worker._batch = 16
    worker.process(get_broker().fetch(["default"], worker.owner, 16, 30))
    assert worker._ahead is not None
    worker._return_ahead()
    again = get_broker().fetch(["default"], "other/1", 32, 30)
    assert [(d.task_id, d.deliveries) for d in again] == [(i, 1) for i in behind]


def test_a_fetch_ahead_that_failed_is_reported_and_its_messages_run_after_all(
        fetching_ahead: AheadBroker, caplog: pytest.LogCaptureFixture) -> None:
    publish(16)
    publish(20, first=100)
    worker = consumer()
    worker._batch = 16
    fetching_ahead.error = ConnectionError("Redis went away")
    worker.process(get_broker().fetch(["default"], worker.owner, 16, 30))
    assert sorted(ran) == list(range(16))
    # run() reads the failed answer as a failed fetch: it backs off, hands back what the
    # lost answer leased, and takes it again
    run_until(worker, lambda: len(ran) >= 36)
    assert sorted(ran) == [*range(16), *range(100, 120)]
    assert "Cannot fetch from the broker (Redis went away)" in caplog.text
    assert "went back to the queue" in caplog.text


def test_a_small_batch_waits_for_its_fetch(fetching_ahead: AheadBroker) -> None:
    publish(20)
    worker = consumer()
    worker._batch = 8
    worker.process(get_broker().fetch(["default"], worker.owner, 15, 30))
    assert fetching_ahead.asked == [] and worker._ahead is None


# -- the Redis broker's start_fetch ---------------------------------------------------------


@pytest.fixture
def redis_broker() -> Iterator[RedisBroker]:
    yield from flushed_redis()


def test_redis_leases_when_the_fetch_is_sent_and_answers_when_asked(
        redis_broker: RedisBroker) -> None:
    assert redis_broker.capabilities.pipelined
    redis_broker.publish([Message(id=f"r{i}", task="unit.ahead.quick", args=(i,))
                          for i in range(5)])
    pending = redis_broker.start_fetch(["default"], "ahead/1", 3, 30)
    # Redis runs the scripts in the order they come: the fetch sent first took three
    others = redis_broker.fetch(["default"], "other/1", 10, 30)
    assert [d.task_id for d in others] == ["r3", "r4"]
    deadline = time.monotonic() + 5
    while not pending.ready() and time.monotonic() < deadline:
        time.sleep(0.001)
    deliveries = pending.result()
    assert [(d.task_id, d.owner, d.deliveries) for d in deliveries] == [
        ("r0", "ahead/1", 1), ("r1", "ahead/1", 1), ("r2", "ahead/1", 1)]
    assert [m.id for m in (d.message() for d in deliveries)] == ["r0", "r1", "r2"]
    assert len(redis_broker.ack(deliveries)) == 3
    assert len(redis_broker.ack(others)) == 2
    assert redis_broker.depths(["default"]) == {"default": 0}


def test_a_redis_fetch_ahead_asking_for_nothing_answers_nothing(
        redis_broker: RedisBroker) -> None:
    redis_broker.publish([Message(id="r0", task="unit.ahead.quick")])
    pending = redis_broker.start_fetch(["default"], "ahead/1", 0, 30)
    assert pending.ready() and pending.result() == []
    assert redis_broker.start_fetch([], "ahead/1", 5, 30).result() == []
    assert redis_broker.depths(["default"]) == {"default": 1}


def test_a_redis_fetch_ahead_whose_connection_broke_is_sent_again_and_leases_once(
        redis_broker: RedisBroker) -> None:
    redis_broker.publish([Message(id="r0", task="unit.ahead.quick")])
    pending = redis_broker.start_fetch(["default"], "ahead/1", 5, 30)
    time.sleep(0.05)  # Redis has leased it; its answer is lost with the connection
    for connection in list(redis_broker._lane._made):
        connection._sock.shutdown(2)
    assert pending.ready()  # reading will not wait for Redis: it sends the fetch again
    [delivery] = pending.result()
    assert (delivery.task_id, delivery.deliveries) == ("r0", 1)  # the same lease, once
    assert redis_broker.ack([delivery]) == [delivery]


def test_after_a_slow_task_what_was_fetched_ahead_goes_back_for_a_batch_of_one(
        fetching_ahead: AheadBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    from django_tasks.worker import consumer as consumer_module

    monkeypatch.setattr(consumer_module, "SLOW_TASK_SECONDS", 0.05)
    publish(35)  # batches of 1, 2, 4, 8 and 16 run, then one of 32 that fetches ahead
    publish(1, "unit.ahead.nap")
    publish(60, first=100)
    worker = consumer()
    released: list[tuple[int, bool]] = []
    broker = get_broker()
    release = broker.release

    def counting(deliveries: list[Delivery], *, count: bool = False) -> int:
        batch = list(deliveries)
        released.append((len(batch), count))
        return release(batch, count=count)

    monkeypatch.setattr(broker, "release", counting)
    run_until(worker, lambda: len(ran) >= 96)
    assert sorted(map(str, ran)) == sorted(map(str, [*range(35), "nap", *range(100, 160)]))
    assert fetching_ahead.asked[0] == 32 and (32, False) in released
    # the batch after the slow task is one message: it was not the one fetched ahead
    assert released[0] == (32, False)


@shared_task(name="unit.ahead.nap")
def nap() -> None:
    time.sleep(0.1)
    ran.append("nap")


def test_a_batch_that_took_all_there_was_sends_no_fetch_ahead(
        fetching_ahead: AheadBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    publish(31 + 20)  # batches of 1, 2, 4, 8 and 16, then one that asks for 32 and gets 20
    worker = consumer()
    idled: list[int] = []
    idle = worker._idle

    def noting(since: object) -> None:
        idled.append(len(ran))
        idle(since)  # type: ignore[arg-type]

    monkeypatch.setattr(worker, "_idle", noting)
    monkeypatch.setattr(worker, "_dry_when_short", lambda: True)
    run_until(worker, lambda: len(ran) >= 51)
    assert sorted(ran) == list(range(51))
    assert fetching_ahead.asked == [32]  # sent by the batch of 16 (whole)
    assert idled and idled[0] == 51  # the short batch of 20 ended the drain: it waits
