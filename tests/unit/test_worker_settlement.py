"""Settling under faults, on the memory broker and store: a database that stops answering,
an outcome the store refuses, a lease that moved on, and tasks that raise BaseException."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import OperationalError

from django_tasks import shared_task, signals, states
from django_tasks.conf import get_broker, get_result_store
from django_tasks.registry import registry
from django_tasks.task import build_message
from django_tasks.worker import consumer as consumer_module
from django_tasks.worker import settle as settle_module
from django_tasks.worker.consumer import Consumer

runs: list[Any] = []


@shared_task(name="unit.settle.echo")
def echo(value: object) -> object:
    runs.append(value)
    return value


@shared_task(name="unit.settle.leave")
def leave(how: str) -> None:
    runs.append(how)
    if how == "exit":
        sys.exit(3)
    raise KeyboardInterrupt


@pytest.fixture(autouse=True)
def _memory(memory_tasks: None) -> Iterator[None]:
    runs.clear()
    yield
    runs.clear()


def teardown_module() -> None:
    for name in ("echo", "leave"):
        registry.unregister(f"unit.settle.{name}")


def consumer(stop: threading.Event | None = None) -> Consumer:
    return Consumer(queues=["default"], owner="test/1", hostname="test@host", prefetch=16,
                    lease=30, stop=stop or threading.Event())


def send(*args: Any, task: str = "unit.settle.echo") -> str:
    message = build_message(task, args, {})
    store = get_result_store()
    assert store is not None
    store.create_pending([message])
    get_broker().publish([message])
    return message.id


def drain(c: Consumer, limit: int = 16) -> None:
    c.process(get_broker().fetch(["default"], c.owner, limit, 30))


def state(task_id: str) -> str | None:
    store = get_result_store()
    assert store is not None
    meta = store.get(task_id)
    return meta.state if meta else None


def result(task_id: str) -> Any:
    store = get_result_store()
    assert store is not None
    meta = store.get(task_id)
    return meta.result if meta else None


# -- the database stops answering ---------------------------------------------------------


class Outage:
    """The result store raises as a lost connection does, until ``end()``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.down = True
        store = get_result_store()
        assert store is not None
        real = store.store_outcomes

        def store_outcomes(outcomes: Any) -> None:
            if self.down:
                raise OperationalError("server closed the connection unexpectedly")
            real(outcomes)

        monkeypatch.setattr(store, "store_outcomes", store_outcomes)
        monkeypatch.setattr(settle_module, "answers", lambda *_: not self.down)
        monkeypatch.setattr(consumer_module, "answers", lambda *_: not self.down)

    def end(self) -> None:
        self.down = False


def test_outcomes_kept_through_an_outage_are_written_when_it_ends(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    ids = [send(i) for i in range(5)]
    outage = Outage(monkeypatch)
    c = consumer()
    drain(c)
    assert runs == [0, 1, 2, 3, 4]
    assert {state(i) for i in ids} == {states.PENDING}
    assert c.settler.waiting and len(c.settler.backlog) == 5
    assert sorted(c.slot.ran_tags() or []) == sorted(s.delivery.tag for s in c.settler.backlog)
    assert "the broker or database does not answer" in caplog.text  # memory:
    assert c.settler.retry() is False  # still down: kept
    outage.end()
    assert c.settler.retry() is True
    assert [result(i) for i in ids] == [0, 1, 2, 3, 4]
    assert get_broker().depths(["default"]) == {"default": 0}
    assert runs == [0, 1, 2, 3, 4], "a task whose outcome was kept ran again"
    assert c.slot.ran_tags() == []
    assert "The broker or database answers again" in caplog.text


def test_a_consumer_with_outcomes_kept_takes_no_new_work(
        monkeypatch: pytest.MonkeyPatch) -> None:
    first = send("a")
    outage = Outage(monkeypatch)
    stop = threading.Event()
    c = consumer(stop)
    drain(c, limit=1)
    later = send("b")
    fetched: list[int] = []
    real_fetch = c.broker.fetch

    def fetch(*args: Any, **kwargs: Any) -> Any:
        got = real_fetch(*args, **kwargs)
        fetched.append(len(got))
        if not outage.down:
            stop.set()
        return got

    monkeypatch.setattr(c.broker, "fetch", fetch)
    monkeypatch.setattr(consumer_module, "pause", lambda failures: 0.0)
    tries = 0
    real_retry = c.settler.retry

    def retry() -> bool:
        nonlocal tries
        tries += 1
        if tries == 3:
            outage.end()
        return real_retry()

    monkeypatch.setattr(c.settler, "retry", retry)
    c.run()
    assert tries >= 3
    assert fetched == [1], "fetched while outcomes were still kept"
    assert (result(first), result(later)) == ("a", "b")


def test_messages_that_cannot_be_handed_back_are_kept_and_released_later(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(consumer_module, "HOLD_SECONDS", 0.0)
    ids = [send(i) for i in range(3)]
    broker = get_broker()
    real_release = broker.release
    down = True

    def release(*args: Any, **kwargs: Any) -> int:
        if down:
            raise OperationalError("connection refused")
        return real_release(*args, **kwargs)

    monkeypatch.setattr(broker, "release", release)
    c = consumer()
    drain(c)
    assert runs == [0]
    assert len(c.settler.handback) == 2 and c.settler.waiting
    down = False
    assert c.settler.retry() is True
    again = broker.fetch(["default"], "other", 10, 30)
    assert [d.deliveries for d in again] == [1, 1]  # handed back uncounted, not lost
    assert state(ids[0]) == states.SUCCESS


# -- the database answers, but refuses one outcome ----------------------------------------


def refuse(monkeypatch: pytest.MonkeyPatch, bad: str, *, also_failure: bool = False) -> None:
    """The store refuses any batch holding ``bad``'s outcome (also its FAILURE, if asked)."""
    store = get_result_store()
    assert store is not None
    real = store.store_outcomes

    def store_outcomes(outcomes: Any) -> None:
        for o in outcomes:
            if o.task_id == bad and (also_failure or o.state != states.FAILURE):
                raise ValueError("A string literal cannot contain NUL (0x00) characters.")
        real(outcomes)

    monkeypatch.setattr(store, "store_outcomes", store_outcomes)


def test_one_unstorable_outcome_costs_only_its_own_message(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    ids = [send(i) for i in range(6)]
    refuse(monkeypatch, ids[2])
    c = consumer()
    drain(c)
    assert runs == list(range(6))
    assert [result(i) for i in ids[:2] + ids[3:]] == [0, 1, 3, 4, 5]
    assert state(ids[2]) == states.FAILURE
    failure = result(ids[2])
    assert failure["exc_type"] == "EncodeError"
    assert "could not be stored" in failure["exc_message"]
    assert "NUL" in failure["exc_message"]
    assert get_broker().depths(["default"]) == {"default": 0}
    assert not c.settler.waiting
    assert "Cannot record the outcome of task unit.settle.echo" in caplog.text


def test_an_outcome_that_no_form_of_can_be_stored_is_acked_and_logged(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    ids = [send(i) for i in range(3)]
    refuse(monkeypatch, ids[1], also_failure=True)
    drain(consumer())
    assert [state(i) for i in ids] == [states.SUCCESS, states.PENDING, states.SUCCESS]
    assert get_broker().depths(["default"]) == {"default": 0}
    assert f"Rejected task unit.settle.echo[{ids[1]}]: no outcome of it can be stored" \
        in caplog.text
    assert runs == [0, 1, 2]


# -- a lease that moved on ------------------------------------------------------------------


def test_a_late_outcome_is_refused_and_the_final_state_stays(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from django_tasks.brokers import memory

    task_id = send("late")
    broker = get_broker()
    [frozen] = broker.fetch(["default"], "frozen/1", 1, 30)
    # The frozen worker's lease lapses; a rescuer claims the message and records SUCCESS.
    row = broker._rows[frozen.tag]  # type: ignore[attr-defined]
    row.visible_at = memory._now()
    rescuer = consumer()
    drain(rescuer)
    assert state(task_id) == states.SUCCESS
    # The frozen worker wakes up: its run fails, and its late write must change nothing.
    publish_again = send("innocent")
    c = Consumer(queues=["default"], owner="frozen/1", hostname="frozen@host", prefetch=16,
                 lease=30, stop=threading.Event())
    monkeypatch.setattr(registry.get("unit.settle.echo"), "fn",
                        lambda value: 1 / 0)
    c.process([frozen])
    assert state(task_id) == states.SUCCESS
    assert result(task_id) == "late"
    assert "lease on it is no longer current" in caplog.text
    assert state(publish_again) == states.PENDING  # untouched by the late release


def test_a_batch_fetched_long_ago_runs_only_what_is_still_held(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from django_tasks.brokers import memory

    ids = [send(i) for i in range(2)]
    broker = get_broker()
    c = consumer()
    batch = broker.fetch(["default"], c.owner, 16, 30)
    broker._rows[batch[0].tag].visible_at = memory._now()  # type: ignore[attr-defined]
    [taken] = broker.fetch(["default"], "other/1", 1, 30)
    assert taken.tag == batch[0].tag
    c.process(batch, fetched_at=0.0)  # as if the fetch had returned after a long freeze
    assert runs == [1]
    assert "went to another worker meanwhile" in caplog.text
    assert state(ids[0]) == states.PENDING


# -- BaseException from a task --------------------------------------------------------------


@pytest.mark.parametrize(("how", "kind"), [("exit", "SystemExit"),
                                           ("interrupt", "KeyboardInterrupt")])
def test_sys_exit_and_keyboard_interrupt_end_the_task_as_failure(how: str, kind: str) -> None:
    bad = send(how, task="unit.settle.leave")
    good = send("after")
    drain(consumer())
    assert state(bad) == states.FAILURE
    assert result(bad)["exc_type"] == kind
    assert result(good) == "after"
    assert get_broker().depths(["default"]) == {"default": 0}


def test_a_signal_receiver_that_raises_does_not_break_the_task(
        caplog: pytest.LogCaptureFixture) -> None:
    def broken(**kwargs: Any) -> None:
        raise RuntimeError("receiver bug")

    signals.task_prerun.connect(broken)
    signals.task_success.connect(broken)
    try:
        task_id = send("fine")
        drain(consumer())
    finally:
        signals.task_prerun.disconnect(broken)
        signals.task_success.disconnect(broken)
    assert result(task_id) == "fine"
    assert "receiver bug" in caplog.text


def test_an_ack_tried_again_does_not_record_or_count_the_run_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A broker outside the database (Redis, RabbitMQ) that does not take the ack: the
    outcome, the dashboard's count and the follow-ups are committed already, and writing
    the settlement again acks it without writing them a second time."""
    ids = [send(i) for i in range(3)]
    broker, store = get_broker(), get_result_store()
    assert store is not None
    counted: list[str] = []
    stored: list[str] = []
    real_count, real_store, real_ack = store.count_outcomes, store.store_outcomes, broker.ack
    monkeypatch.setattr(store, "count_outcomes",
                        lambda outcomes: (counted.extend(o.task_id for o in outcomes),
                                          real_count(outcomes))[1])
    monkeypatch.setattr(store, "store_outcomes",
                        lambda outcomes: (stored.extend(o.task_id for o in outcomes),
                                          real_store(outcomes))[1])
    broker_down = [True]

    def ack(deliveries: Any) -> Any:
        if broker_down[0]:
            raise ConnectionError("Connection refused")
        return real_ack(deliveries)

    monkeypatch.setattr(broker, "ack", ack)
    monkeypatch.setattr(settle_module, "answers", lambda *_: not broker_down[0])
    monkeypatch.setattr(consumer_module, "answers", lambda *_: not broker_down[0])
    c = consumer()
    drain(c)
    assert sorted(counted) == sorted(stored) == sorted(ids)  # committed before the ack
    assert c.settler.waiting and len(c.settler.backlog) == 3
    broker_down[0] = False
    assert c.settler.retry() is True
    assert sorted(counted) == sorted(stored) == sorted(ids), "written twice"
    assert broker.depths(["default"]) == {"default": 0}
    assert [result(i) for i in ids] == [0, 1, 2] and runs == [0, 1, 2]


def test_without_a_result_store_the_ack_alone_fences_the_lease(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """With nothing to write before the ack (no result store, no follow-ups), the leases
    are not confirmed first: the ack names each lease, and refuses one that moved on."""
    from django.test import override_settings

    from django_tasks.brokers import memory
    from django_tasks.conf import reset_cache

    with override_settings(TASKS_RESULT_BACKEND=None):
        reset_cache()
        broker = get_broker()
        confirms: list[int] = []
        real_confirm = broker.confirm
        monkeypatch.setattr(broker, "confirm", lambda deliveries, lease: (
            confirms.append(len(deliveries)), real_confirm(deliveries, lease))[1])
        for value in ("a", "b"):
            broker.publish([build_message("unit.settle.echo", (value,), {})])
        mine = consumer()
        held = broker.fetch(["default"], mine.owner, 16, 30)
        # The first message's lease lapses and another worker claims it meanwhile.
        broker._rows[held[0].tag].visible_at = memory._now()  # type: ignore[attr-defined]
        [taken] = broker.fetch(["default"], "other/1", 16, 30)
        assert taken.tag == held[0].tag
        mine.process(held)
        assert confirms == [] and runs == ["a", "b"]
        assert "lease on it is no longer current" in caplog.text
        broker.ack([taken])
        assert broker.depths(["default"]) == {"default": 0}
    reset_cache()
