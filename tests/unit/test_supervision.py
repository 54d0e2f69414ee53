"""The supervisor's side of the pools, without processes: a consumer thread that dies is
handed back and replaced, a dying child's started deliveries are counted, and owner names
are never reused."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from django_tasks.process.signals import Signals
from django_tasks.worker import Worker
from django_tasks.worker import supervisor as supervisor_module
from django_tasks.worker import threads as threads_module
from django_tasks.worker.recycle import Recycler
from django_tasks.worker.slots import Running, Slot
from django_tasks.worker.supervisor import hand_back, owner_name


@pytest.fixture
def released(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    calls: list[dict[str, Any]] = []

    def release(owner: str, keep_count: Any = (), *, count_all: bool = False,
                died_running: Any = ()) -> int:
        calls.append({"owner": owner, "keep": sorted(keep_count), "all": count_all,
                      "died": sorted(died_running)})
        return 0

    monkeypatch.setattr(supervisor_module.heartbeat, "release", release)
    yield calls


def running(tag: int, deliveries: int = 1) -> Running:
    return Running(tag, 7, "id", "t", "q", deliveries, 0, 0.0, 0.0, 0.0)


def test_hand_back_counts_what_had_started(released: list[dict[str, Any]]) -> None:
    slot = Slot()
    slot.ran([11, 12])
    hand_back("w/p1.x", slot, running=running(10))
    assert released == [{"owner": "w/p1.x", "keep": [10, 11, 12], "all": False,
                         "died": [10]}]


def test_a_suspect_that_died_is_not_counted_twice(released: list[dict[str, Any]]) -> None:
    hand_back("w/p1.x", Slot(), running=running(10, deliveries=2))  # it recorded its start
    assert released[0]["died"] == [] and released[0]["keep"] == [10]


def test_too_many_started_to_list_counts_everything(released: list[dict[str, Any]],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    slot = Slot()
    monkeypatch.setattr(slot, "ran_tags", lambda: None)
    hand_back("w/p1.x", slot)
    assert released[0]["all"] is True


def test_owner_names_are_new_every_time() -> None:
    names = {owner_name("w@h", "t0") for _ in range(50)}
    assert len(names) == 50 and all(n.startswith("w@h/t0.") for n in names)
    assert len(owner_name("x" * 255, "p1")) <= 255


def test_a_consumer_thread_that_dies_is_handed_back_and_replaced(
        released: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    runs: list[str] = []
    stop = threading.Event()

    class Dying:
        def __init__(self, owner: str, slot: Slot) -> None:
            self.owner, self.slot = owner, slot

        def run(self) -> None:
            runs.append(self.owner)
            if len(runs) == 1:
                self.slot.set(running(42))
                raise RuntimeError("a bug of ours")
            stop.wait(5)

    monkeypatch.setattr(threads_module, "_consumer",
                        lambda worker, owner, stop_, slot, *_: Dying(owner, slot))
    worker = Worker(hostname="unit@host", concurrency=1, pool="threads", out=io.StringIO())
    signals = Signals()
    signals.stop = stop
    pool = threads_module.ThreadPool(worker, signals, Recycler())
    pool.start()
    first = pool.members[0].owner
    deadline = time.monotonic() + 5
    while pool.members[0].thread and pool.members[0].thread.is_alive():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    pool.check(respawn=True)
    try:
        assert released == [{"owner": first, "keep": [42], "all": False, "died": [42]}]
        deadline = time.monotonic() + 5
        while len(runs) < 2:
            assert time.monotonic() < deadline, "the thread was not replaced"
            time.sleep(0.01)
        assert runs[1] != first, "the replacement reused the dead consumer's owner name"
        assert "Consumer thread 0 stopped on an unexpected error" in caplog.text
    finally:
        stop.set()


# -- the supervisor asks the broker's capabilities, never its class ------------------------


class LeaselessBroker:
    """What the supervisor sees of a broker whose dead consumers' deliveries come back by
    themselves (AMQP): no renew, no release_owner, no ack of a dead child's delivery."""

    from django_tasks.brokers.base import Capabilities

    capabilities = Capabilities(leases=False)
    database_alias = None
    home_alias = "default"

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return []
        return call


def test_without_leases_nothing_is_renewed_or_released(monkeypatch: pytest.MonkeyPatch) -> None:
    from django_tasks.worker import heartbeat

    broker = LeaselessBroker()
    monkeypatch.setattr(heartbeat, "get_broker", lambda: broker)
    monkeypatch.setattr(heartbeat.liveness, "touch", lambda identity, counts=None: None)
    worker = Worker(hostname="unit@host", concurrency=1, out=io.StringIO())
    assert heartbeat.beat(worker, ["w/p1.x"]) is True
    assert heartbeat.release("w/p1.x", keep_count=[1]) == 0
    assert broker.calls == []


def test_without_leases_a_time_limit_records_the_outcome_and_leaves_the_ack(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from django_tasks.results.memory import MemoryResultStore

    broker, store = LeaselessBroker(), MemoryResultStore()
    monkeypatch.setattr("django_tasks.conf.get_broker", lambda: broker)
    monkeypatch.setattr("django_tasks.conf.get_result_store", lambda: store)
    worker = Worker(hostname="unit@host", concurrency=1, out=io.StringIO())
    limited = Running(5, 9, "late-id", "t", "q", 1, 0, 0.0, 2.0, 0.0)
    supervisor_module.record_exceeded(worker, limited, "w/p1.x", "its process was killed")
    meta = store.get("late-id")
    assert meta is not None and meta.state == "FAILURE"
    assert "ack" not in broker.calls


# -- the prefetch trap: what waits behind a long task is given back ---------------------------


def _batch_behind(task_started: float) -> tuple[Slot, list[Any]]:
    from django_tasks.conf import get_broker
    from django_tasks.message import Message

    broker = get_broker()
    broker.publish([Message(id=f"m{i}", task="unit.sup.t") for i in range(3)])
    deliveries = broker.fetch(["default"], "w/p1.x", 3, 30)
    slot = Slot()
    slot.hold([(d.tag, d.token, d.deliveries) for d in deliveries])
    assert slot.take(0)
    first = deliveries[0]
    slot.set(Running(first.tag, first.token, "m0", "unit.sup.t", "default", 1, 0,
                     task_started, 0.0, 0.0))
    return slot, deliveries


def test_a_long_task_gives_back_what_waits_behind_it(memory_tasks: None) -> None:
    from django_tasks.conf import get_broker

    slot, deliveries = _batch_behind(time.time() - supervisor_module.HOLD_SECONDS - 1)
    supervisor_module.give_back_waiting("w/p1.x", slot)
    taken = get_broker().fetch(["default"], "w/p2.y", 10, 30)
    assert sorted(d.tag for d in taken) == sorted(d.tag for d in deliveries[1:])
    assert all(d.deliveries == 1 for d in taken)  # handed back uncounted
    assert not slot.take(1) and not slot.take(2)


def test_a_short_task_keeps_its_batch(memory_tasks: None) -> None:
    from django_tasks.conf import get_broker

    slot, _ = _batch_behind(time.time())
    supervisor_module.give_back_waiting("w/p1.x", slot)
    assert get_broker().fetch(["default"], "w/p2.y", 10, 30) == []
    assert slot.take(1) and slot.take(2)
