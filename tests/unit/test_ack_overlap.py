"""A consumer's settler leaves a batch's ack on its way (``Broker.start_ack``) and reads its
answer at the next settlement, before the consumer idles or stops, or before it releases what
its name holds: on Redis the consumer runs its next batch while Redis acks the last.

The settler's side runs on the memory broker, given a ``start_ack`` that acks only when its
answer is read; the Redis broker's own ``start_ack`` on a real Redis.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from django_tasks import shared_task
from django_tasks.brokers.base import Delivery
from django_tasks.brokers.memory import MemoryBroker
from django_tasks.brokers.redis import RedisBroker
from django_tasks.conf import get_broker
from django_tasks.message import Message
from django_tasks.registry import registry
from django_tasks.task import build_message
from django_tasks.worker.consumer import Consumer
from django_tasks.worker.settle import Settlement, Settler

from .conftest import flushed_redis

ran: list[int] = []


@shared_task(name="unit.overlap.quick")
def quick(value: int) -> None:
    ran.append(value)


def teardown_module() -> None:
    registry.unregister("unit.overlap.quick")


class Acks:
    """What the memory broker's deferred acks did: the batches sent, and how many failures
    the next answers bring."""

    def __init__(self) -> None:
        self.sent: list[list[int]] = []
        self.failures = 0


@pytest.fixture
def deferred(memory_tasks: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Acks]:
    """The memory broker acks a batch only when the answer is read, as if it were on its
    way meanwhile."""
    ran.clear()
    broker = get_broker()
    vars(broker)["capabilities"] = dataclasses.replace(broker.capabilities, pipelined=True)
    acks = Acks()

    def start_ack(deliveries: list[Delivery]) -> Callable[[], list[Delivery]]:
        batch = list(deliveries)
        acks.sent.append([d.tag for d in batch])

        def end() -> list[Delivery]:
            if acks.failures:
                acks.failures -= 1
                raise ConnectionError("Redis went away")
            return broker.ack(batch)
        return end

    monkeypatch.setattr(broker, "start_ack", start_ack)
    yield acks


def leased(count: int, owner: str = "overlap/1") -> list[Delivery]:
    broker = get_broker()
    broker.publish([Message(id=f"o{len(broker._rows)}-{i}", task="unit.overlap.quick",  # type: ignore[attr-defined]
                            args=(i,)) for i in range(count)])
    return broker.fetch(["default"], owner, count, 30)


def held() -> int:
    broker = get_broker()
    assert isinstance(broker, MemoryBroker)
    return len(broker._rows)


def test_an_ack_on_its_way_is_read_by_the_next_settlement(deferred: Acks) -> None:
    changes: list[list[int]] = []
    settler = Settler(get_broker(), None, 30, on_change=changes.append, overlap_acks=True)
    first, second = leased(3), leased(2)
    settler.settle([Settlement(d) for d in first])
    assert held() == 5  # on its way: not acked yet
    # the slot still lists them as run and unsettled: a death now counts them
    assert changes[-1] == [d.tag for d in first]
    settler.settle([Settlement(d) for d in second])
    assert held() == 2 and changes[-1] == [d.tag for d in second]
    # while the first's answer was read, the second (run, not yet written) stayed listed
    assert changes[-2] == [d.tag for d in second]
    settler.finish()
    assert held() == 0 and changes[-1] == []
    assert deferred.sent == [[d.tag for d in first], [d.tag for d in second]]
    settler.finish()  # nothing on its way: nothing happens
    assert changes[-1] == []


def test_an_ack_whose_answer_failed_is_written_again(deferred: Acks) -> None:
    settler = Settler(get_broker(), None, 30, overlap_acks=True)
    settler.settle([Settlement(d) for d in leased(3)])
    deferred.failures = 1
    settler.finish()  # the answer failed: each is acked again, at once
    assert held() == 0 and not settler.waiting


def test_an_ack_that_keeps_failing_is_kept_and_the_consumer_takes_nothing_new(
        deferred: Acks, monkeypatch: pytest.MonkeyPatch) -> None:
    settler = Settler(get_broker(), None, 30, overlap_acks=True)
    deliveries = leased(2)
    settler.settle([Settlement(d) for d in deliveries])
    broker = get_broker()

    def away(batch: list[Delivery]) -> list[Delivery]:
        raise ConnectionError("Redis went away")

    deferred.failures = 1
    monkeypatch.setattr(broker, "ack", away)
    monkeypatch.setattr("django_tasks.worker.settle.time.sleep", lambda s: None)
    settler.finish()
    assert settler.waiting and held() == 2  # kept, not lost
    monkeypatch.undo()
    assert settler.retry() and held() == 0


def test_a_refused_ack_on_its_way_is_logged(deferred: Acks,
                                           caplog: pytest.LogCaptureFixture) -> None:
    settler = Settler(get_broker(), None, 30, overlap_acks=True)
    [delivery] = leased(1)
    broker = get_broker()
    broker.release([delivery])
    broker.fetch(["default"], "other/1", 1, 30)  # the message went to another worker
    settler.settle([Settlement(delivery, label="unit.overlap.quick[o0]")])
    settler.finish()
    assert "unit.overlap.quick[o0]: this worker's lease on it is no longer current" \
        in caplog.text
    assert held() == 1


def test_a_settler_made_for_one_settlement_acks_before_it_returns(deferred: Acks) -> None:
    Settler(get_broker(), None, 30).settle([Settlement(d) for d in leased(2)])
    assert held() == 0 and deferred.sent == []


def test_a_consumer_reads_the_last_ack_before_it_idles(deferred: Acks) -> None:
    broker = get_broker()
    broker.publish([build_message("unit.overlap.quick", (i,), {}) for i in range(40)])
    stop = threading.Event()
    consumer = Consumer(queues=["default"], owner="overlap/1", hostname="test@host",
                        prefetch=16, lease=30, stop=stop)
    thread = threading.Thread(target=consumer.run)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while (len(ran) < 40 or held()) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sorted(ran) == list(range(40))
        assert held() == 0  # acked while the consumer still runs, idle
        assert len(deferred.sent) > 1
    finally:
        stop.set()
        thread.join(timeout=10)


# -- the Redis broker's start_ack ---------------------------------------------------------


@pytest.fixture
def redis_broker() -> Iterator[RedisBroker]:
    yield from flushed_redis()


def test_redis_acks_on_its_way_fenced_by_the_lease(redis_broker: RedisBroker) -> None:
    redis_broker.publish([Message(id=f"r{i}", task="unit.overlap.quick", args=(i,))
                          for i in range(3)])
    deliveries = redis_broker.fetch(["default"], "overlap/1", 3, 30)
    stale = Delivery(tag=deliveries[2].tag, body="", queue="default", deliveries=1,
                     owner="overlap/1", token=deliveries[2].token + 1)
    end = redis_broker.start_ack([*deliveries[:2], stale])
    assert end() == deliveries[:2]  # the third's token is not its lease's
    assert redis_broker.depths(["default"]) == {"default": 1}
    assert redis_broker.start_ack([])() == []
