"""The consumer loop on the memory broker and memory result store: one batch at a time."""

from __future__ import annotations

import datetime as dt
import itertools
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from django_tasks import shared_task, states
from django_tasks.conf import get_broker, get_result_store
from django_tasks.message import Message
from django_tasks.registry import registry
from django_tasks.task import build_message
from django_tasks.worker import consumer as consumer_module
from django_tasks.worker import idle
from django_tasks.worker import slots as slots_module
from django_tasks.worker.consumer import Consumer

calls: list[str] = []


@shared_task(name="unit.worker.echo")
def echo(value: object) -> object:
    calls.append("echo")
    return value


@shared_task(name="unit.worker.boom")
def boom() -> None:
    raise ZeroDivisionError("boom")


@shared_task(name="unit.worker.retrying", bind=True, max_retries=1, default_retry_delay=60)
def retrying(self) -> None:  # type: ignore[no-untyped-def]
    raise self.retry(exc=RuntimeError("again"))


@shared_task(name="unit.worker.at_most_once", acks_late=False)
def at_most_once() -> int:
    # Acked before running: the broker no longer holds the message.
    return sum(get_broker().depths(["default"]).values())


@pytest.fixture(autouse=True)
def _memory(memory_tasks: None) -> Iterator[None]:
    calls.clear()
    yield


def make_consumer(stop: threading.Event | None = None) -> Consumer:
    return Consumer(queues=["default"], owner="test/1", hostname="test@host", prefetch=16,
                    lease=30, stop=stop or threading.Event())


def send(message: Message) -> str:
    get_broker().publish([message])
    return message.id


def drain(consumer: Consumer) -> None:
    deliveries = get_broker().fetch(["default"], consumer.owner, 16, 30)
    consumer.process(deliveries)


def meta(task_id: str):  # type: ignore[no-untyped-def]
    return get_result_store().get(task_id)


def test_success_is_recorded_then_acked() -> None:
    ids = [send(build_message("unit.worker.echo", (i,), {})) for i in range(5)]
    drain(make_consumer())
    assert [meta(i).result for i in ids] == [0, 1, 2, 3, 4]
    assert {meta(i).state for i in ids} == {states.SUCCESS}
    assert meta(ids[0]).worker == "test@host"
    assert get_broker().depths(["default"]) == {"default": 0}


def test_a_broker_that_sends_ahead_of_acks_is_acked_each_half_window(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """RabbitMQ sends a consumer no more than its prefetch ahead of the acks: a batch is
    settled each time half of that has run, not only at its end, so that the next
    messages are on their way while the rest runs."""
    broker = get_broker()
    monkeypatch.setattr(broker, "window", 4, raising=False)
    acked: list[int] = []
    ack = broker.ack

    def counting(deliveries):  # type: ignore[no-untyped-def]
        batch = list(deliveries)
        acked.append(len(batch))
        return ack(batch)

    monkeypatch.setattr(broker, "ack", counting)
    ids = [send(build_message("unit.worker.echo", (i,), {})) for i in range(7)]
    drain(make_consumer())
    assert acked == [2, 2, 2, 1]
    assert [meta(i).result for i in ids] == list(range(7))
    monkeypatch.setattr(broker, "window", None, raising=False)
    acked.clear()
    ids = [send(build_message("unit.worker.echo", (i,), {})) for i in range(7)]
    drain(make_consumer())
    assert acked == [7]  # elsewhere: at the end of the batch (or every 20 ms)


def test_failure_records_type_message_and_traceback() -> None:
    task_id = send(build_message("unit.worker.boom", (), {}))
    drain(make_consumer())
    result = meta(task_id)
    assert result.state == states.FAILURE
    assert result.result["exc_type"] == "ZeroDivisionError"
    assert "boom" in result.traceback


def test_already_finished_id_is_acked_without_running() -> None:
    message = build_message("unit.worker.echo", (1,), {})
    get_result_store().revoke(message.id)
    send(message)
    drain(make_consumer())
    assert calls == []
    assert meta(message.id).state == states.REVOKED
    assert get_broker().depths(["default"]) == {"default": 0}


def test_unknown_task_fails_with_reason_and_worker_goes_on() -> None:
    bad = send(build_message("unit.worker.nope", (), {}))
    good = send(build_message("unit.worker.echo", ("ok",), {}))
    drain(make_consumer())
    assert meta(bad).state == states.FAILURE
    assert meta(bad).result["exc_type"] == "NotRegistered"
    assert "unit.worker.nope" in meta(bad).result["exc_message"]
    assert meta(good).result == "ok"


def test_wrong_arguments_fail_without_running() -> None:
    task_id = send(build_message("unit.worker.echo", (1, 2, 3), {}))
    drain(make_consumer())
    assert calls == []
    assert meta(task_id).result["exc_type"] == "TypeError"


def test_undecodable_message_fails_under_the_id_the_broker_kept(
        caplog: pytest.LogCaptureFixture) -> None:
    broker = get_broker()
    task_id = send(build_message("unit.worker.echo", (1,), {}))
    row = next(iter(broker._rows.values()))
    row.body = "{not json"
    good = send(build_message("unit.worker.echo", ("ok",), {}))
    drain(make_consumer())
    assert broker.depths(["default"]) == {"default": 0}
    assert "Rejected" in caplog.text and "not valid JSON" in caplog.text
    assert meta(task_id).state == states.FAILURE
    assert meta(task_id).result["exc_type"] == "DecodeError"
    assert "not valid JSON" in meta(task_id).result["exc_message"]
    assert meta(good).result == "ok"


def test_undecodable_message_without_any_id_is_dropped_and_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    broker = get_broker()
    send(build_message("unit.worker.echo", (1,), {}))
    row = next(iter(broker._rows.values()))
    row.body, row.task_id = "{not json", ""
    drain(make_consumer())
    assert broker.depths(["default"]) == {"default": 0}
    assert "Rejected message" in caplog.text
    assert get_result_store()._results == {}  # nothing to record it under


def test_malformed_envelope_fails_with_its_id_and_worker_goes_on() -> None:
    broker = get_broker()
    broker.publish([build_message("unit.worker.echo", (1,), {}, task_id="odd-1")])
    row = next(iter(broker._rows.values()))
    row.body = ('{"headers": {"id": "odd-1", "task": "unit.worker.echo"}, '
                '"properties": "text", "body": [[1], {}, {}]}')
    good = send(build_message("unit.worker.echo", ("ok",), {}))
    drain(make_consumer())
    assert meta("odd-1").state == states.FAILURE
    assert meta("odd-1").result["exc_type"] == "DecodeError"
    assert meta(good).result == "ok"


def test_an_unexpected_error_costs_only_its_own_message(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    ids = [send(build_message("unit.worker.echo", (i,), {})) for i in range(3)]
    real_execute = consumer_module.execute

    def execute(item, *args, **kwargs):  # type: ignore[no-untyped-def]
        if item.message.id == ids[1]:
            raise RuntimeError("a bug of ours")
        return real_execute(item, *args, **kwargs)

    monkeypatch.setattr(consumer_module, "execute", execute)
    drain(make_consumer())
    assert [meta(i).state if meta(i) else None for i in ids] == [
        states.SUCCESS, None, states.SUCCESS]
    assert calls == ["echo", "echo"]
    assert "Unexpected error while handling" in caplog.text
    [again] = get_broker().fetch(["default"], "other", 10, 30)
    assert again.deliveries == 2  # counted: one that always trips a bug ends as poison


def test_expired_message_is_revoked_not_run() -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    task_id = send(build_message("unit.worker.echo", (1,), {}, expires=past))
    drain(make_consumer())
    assert calls == []
    assert meta(task_id).state == states.REVOKED


def test_a_message_that_was_running_when_its_process_died_too_often_ends_as_failure(
        settings) -> None:  # type: ignore[no-untyped-def]
    settings.TASKS_MAX_DELIVERIES = 2
    task_id = send(build_message("unit.worker.echo", (1,), {}))
    broker = get_broker()
    for _ in range(2):  # it was running each time its process died
        [delivery] = broker.fetch(["default"], "dead", 1, 30)
        broker.release_owner("dead", keep_count=[delivery.tag], died_running=[delivery.tag])
    drain(make_consumer())
    assert calls == []
    assert meta(task_id).state == states.FAILURE
    assert meta(task_id).result["exc_type"] == "WorkerLostError"
    assert "was running 2 times when its process died" in meta(task_id).result["exc_message"]


def test_deliveries_whose_worker_died_before_they_started_count_less(settings) -> None:  # type: ignore[no-untyped-def]
    """A whole worker killed while messages waited in its batches: nobody knows they
    started, so they reach the limit only after three times as many deliveries."""
    settings.TASKS_MAX_DELIVERIES = 2
    task_id = send(build_message("unit.worker.echo", (1,), {}))
    broker = get_broker()
    for _ in range(5):  # its holders died (the lease lapsed, counted), never known to run
        broker.release(broker.fetch(["default"], "dead", 1, 30), count=True)
    drain(make_consumer())  # the sixth delivery: 6 <= 3 x 2, so it runs
    assert meta(task_id).result == 1
    again = send(build_message("unit.worker.echo", (2,), {}))
    for _ in range(6):
        broker.release(broker.fetch(["default"], "dead", 1, 30), count=True)
    drain(make_consumer())  # the seventh: past 3 x 2
    assert meta(again).state == states.FAILURE
    assert "was delivered 6 times and never finished" in meta(again).result["exc_message"]


def test_a_message_delivered_before_records_its_start_before_running() -> None:
    task_id = send(build_message("unit.worker.echo", (1,), {}))
    broker = get_broker()
    broker.release(broker.fetch(["default"], "dead", 1, 30), count=True)
    [delivery] = broker.fetch(["default"], "test/1", 1, 30)
    assert (delivery.deliveries, delivery.runs) == (2, 0)
    started: list[int] = []
    real = broker.record_start

    def record_start(d):  # type: ignore[no-untyped-def]
        started.append(broker._rows[d.tag].runs)
        return real(d)

    broker.record_start = record_start
    make_consumer().process([delivery])
    assert started == [0] and meta(task_id).result == 1


def test_retry_requeues_with_more_retries_and_a_delay() -> None:
    task_id = send(build_message("unit.worker.retrying", (), {}))
    drain(make_consumer())
    assert meta(task_id).state == states.RETRY
    broker = get_broker()
    assert broker.depths(["default"]) == {"default": 1}
    assert broker.fetch(["default"], "x", 10, 30) == []  # not due for 60 s
    row = next(iter(broker._rows.values()))
    assert Message.decode(row.body).retries == 1


def test_acks_late_false_acks_before_running() -> None:
    task_id = send(build_message("unit.worker.at_most_once", (), {}))
    drain(make_consumer())
    assert meta(task_id).result == 0


def test_held_batch_hands_back_unstarted_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(consumer_module, "HOLD_SECONDS", 0.0)
    ids = [send(build_message("unit.worker.echo", (i,), {})) for i in range(3)]
    drain(make_consumer())
    assert meta(ids[0]).state == states.SUCCESS
    assert get_broker().depths(["default"]) == {"default": 2}
    again = get_broker().fetch(["default"], "other", 10, 30)
    assert [d.deliveries for d in again] == [1, 1]  # handing back did not count


def test_run_returns_when_stopped() -> None:
    stop = threading.Event()
    consumer = make_consumer(stop)
    send(build_message("unit.worker.echo", ("x",), {}))
    thread = threading.Thread(target=consumer.run)
    thread.start()
    for _ in range(200):
        if calls:
            break
        stop.wait(0.01)
    stop.set()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert calls == ["echo"]


def teardown_module() -> None:
    for name in ("echo", "boom", "retrying", "at_most_once"):
        registry.unregister(f"unit.worker.{name}")


def test_a_message_its_last_holder_never_settled_runs_alone() -> None:
    broker = get_broker()
    ids = [send(build_message("unit.worker.echo", (i,), {})) for i in range(4)]
    broker.fetch(["default"], "dead/1", 2, lease=0)  # died holding two; the leases lapse
    consumer = make_consumer()
    deliveries = broker.fetch(["default"], consumer.owner, 16, 30)
    assert [d.deliveries for d in deliveries] == [2, 2, 1, 1]
    consumer.process(deliveries)
    assert calls == ["echo"], "the suspect shared its process with other messages"
    left = sorted(broker._rows.values(), key=lambda r: r.id)
    assert [(r.owner, r.deliveries) for r in left] == [(None, 1), (None, 0), (None, 0)]
    while deliveries := broker.fetch(["default"], consumer.owner, 16, 30):
        consumer.process(deliveries)
    assert [meta(i).result for i in ids] == [0, 1, 2, 3]


def test_a_recycled_consumer_hands_back_the_rest_of_its_batch_uncounted() -> None:
    from django_tasks.worker.recycle import Recycler

    ids = [send(build_message("unit.worker.echo", (i,), {})) for i in range(5)]
    consumer = Consumer(queues=["default"], owner="test/1", hostname="test@host", prefetch=16,
                        lease=30, stop=threading.Event(), recycler=Recycler(max_tasks=2))
    drain(consumer)
    assert calls == ["echo", "echo"]
    assert [meta(i).result for i in ids[:2]] == [0, 1]
    left = sorted(get_broker()._rows.values(), key=lambda r: r.id)
    assert [(r.owner, r.deliveries) for r in left] == [(None, 0)] * 3
    consumer.run()  # returns at once: a recycled consumer takes nothing more
    assert calls == ["echo", "echo"]


# -- waiting on an idle queue ------------------------------------------------------------------


class _FakeTime:
    """The consumer's clock: moves only when the consumer waits."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def time(self) -> float:
        return self.now


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> _FakeTime:
    """The consumer's and the turns' clock, moved by hand."""
    clock = _FakeTime()
    monkeypatch.setattr(consumer_module, "time", clock)
    monkeypatch.setattr(idle, "time", clock)
    return clock


def test_an_idle_consumer_that_can_be_woken_fetches_once_a_second(
        monkeypatch: pytest.MonkeyPatch, fake: _FakeTime) -> None:
    stop = threading.Event()
    consumer = make_consumer(stop)
    fetches: list[float] = []
    fetch = consumer.broker.fetch

    def counted_fetch(*args: object, **kwargs: object) -> list[object]:
        fetches.append(fake.now)
        if len(fetches) == 5:
            stop.set()
        return fetch(*args, **kwargs)  # type: ignore[arg-type]

    def wait(queues: object, timeout: float, **kwargs: object) -> bool:
        fake.sleep(timeout)  # nothing is published: every wait runs out
        return False

    monkeypatch.setattr(consumer.broker, "fetch", counted_fetch)
    monkeypatch.setattr(consumer.broker, "wait", wait)
    consumer.run()
    gaps = [b - a for a, b in itertools.pairwise(fetches)]
    # The first wait tells the consumer that this broker wakes it; from then on it waits
    # for a wake-up, looking again on its own only once a second.
    assert len(gaps) == 4 and all(gap >= consumer_module.IDLE_FETCH_SECONDS for gap in gaps[1:])


def test_a_wake_up_makes_an_idle_consumer_fetch_at_once(monkeypatch: pytest.MonkeyPatch,
                                                       fake: _FakeTime) -> None:
    stop = threading.Event()
    consumer = make_consumer(stop)
    fetch = consumer.broker.fetch
    fetched_at: list[float] = []

    def counted_fetch(*args: object, **kwargs: object) -> list[object]:
        fetched_at.append(fake.now)
        return fetch(*args, **kwargs)  # type: ignore[arg-type]

    def wait(queues: object, timeout: float, **kwargs: object) -> bool:
        fake.sleep(0.01)
        send(Message(id="woken", task="unit.worker.echo", args=(1,)))
        return True

    monkeypatch.setattr(consumer.broker, "fetch", counted_fetch)
    monkeypatch.setattr(consumer.broker, "wait", wait)
    original = consumer.process

    def process_then_stop(*args: object, **kwargs: object) -> bool:
        stop.set()
        return original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(consumer, "process", process_then_stop)
    consumer.run()
    assert get_result_store().get("woken").state == states.SUCCESS  # type: ignore[union-attr]
    assert fetched_at[1] - fetched_at[0] < 0.05  # woken, not a second's poll


def test_a_broker_that_cannot_wake_is_polled_with_back_off(
        monkeypatch: pytest.MonkeyPatch, fake: _FakeTime, settings) -> None:  # type: ignore[no-untyped-def]
    settings.TASKS_POLL_INTERVAL = 1.0
    consumer = make_consumer()
    fetched_at: list[float] = []
    fetch = consumer.broker.fetch

    def counted_fetch(*args: object, **kwargs: object) -> list[object]:
        fetched_at.append(fake.now)
        return fetch(*args, **kwargs)  # type: ignore[arg-type]

    class Flag:
        def is_set(self) -> bool:
            return fake.now > 1010

        def wait(self, timeout: float | None = None) -> bool:
            fake.sleep(timeout or 0.0)
            return False

    monkeypatch.setattr(consumer.broker, "fetch", counted_fetch)
    consumer.stop = Flag()
    assert consumer.broker.wait(["default"], 0.1) is None  # the memory broker cannot
    consumer.run()
    gaps = [round(b - a, 6) for a, b in itertools.pairwise(fetched_at)]
    assert gaps[:4] == [idle.FIRST_PAUSE, 0.002, 0.004, 0.008]  # doubling from 1 ms ...
    assert gaps == sorted(gaps) and max(gaps) == 1.0  # ... up to TASKS_POLL_INTERVAL
    assert 10 < len(fetched_at) < 25  # not 20 a second


def test_an_idle_consumer_looks_again_when_a_delayed_message_comes_due(
        monkeypatch: pytest.MonkeyPatch, settings) -> None:  # type: ignore[no-untyped-def]
    """Its turns would have it look again in a minute; the broker said that a message comes
    due in a moment, and it runs then."""
    settings.TASKS_POLL_INTERVAL = 60.0
    monkeypatch.setattr(idle, "FIRST_PAUSE", 60.0)
    stop = threading.Event()
    consumer = make_consumer(stop)
    eta = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=0.3)
    task_id = send(build_message("unit.worker.echo", (7,), {}, eta=eta))
    thread = threading.Thread(target=consumer.run)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while meta(task_id) is None and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        stop.set()
        thread.join()
    assert meta(task_id).state == states.SUCCESS
    assert meta(task_id).date_done >= eta


def test_a_consumer_between_tasks_asks_when_a_message_comes_due_a_few_times_a_second(
        monkeypatch: pytest.MonkeyPatch, fake: _FakeTime) -> None:
    """A trickle of tasks, each followed by a fetch that finds nothing, would otherwise cost
    a question each; a wake-up that found nothing is asked about every time."""
    consumer = make_consumer()
    asked: list[float] = []

    def next_due(queues: object, since: object) -> None:
        asked.append(fake.now)

    monkeypatch.setattr(consumer.broker, "next_due", next_due)
    since = dt.datetime.now(dt.UTC)
    consumer._expect_due(since)  # the first
    consumer._woken = False  # as after a wait that ended on its turn
    for _ in range(20):  # a task every 10 ms, an empty fetch after each
        fake.sleep(0.01)
        consumer._expect_due(since)
    assert len(asked) == 1
    fake.sleep(consumer_module.ASK_DUE_SECONDS)
    consumer._expect_due(since)
    assert len(asked) == 2
    consumer._woken = True  # woken for a message another consumer took
    consumer._expect_due(since)
    assert len(asked) == 3
    consumer._woken, consumer._took_due = False, True  # it took the time it was given
    consumer._expect_due(since)
    assert len(asked) == 4


def test_wake_ups_that_find_their_message_ask_nothing_more(
        monkeypatch: pytest.MonkeyPatch, fake: _FakeTime) -> None:
    """A message, its task, an empty fetch, a wake-up for the next: the round trip of a
    warm worker asks the broker when a message comes due once, not once a task."""
    stop = threading.Event()
    consumer = make_consumer(stop)
    asked: list[float] = []
    sent: list[str] = []

    def next_due(queues: object, since: object) -> None:
        asked.append(fake.now)

    def wait(queues: object, timeout: float, **kwargs: object) -> bool:
        fake.sleep(0.003)
        if len(sent) == 10:
            stop.set()
            return False
        sent.append(send(Message(id=f"trip{len(sent)}", task="unit.worker.echo", args=(1,))))
        return True

    monkeypatch.setattr(consumer.broker, "next_due", next_due)
    monkeypatch.setattr(consumer.broker, "wait", wait)
    consumer.run()
    assert {meta(i).state for i in sent} == {states.SUCCESS}
    assert len(asked) == 1  # after the first fetch, which found nothing


def test_a_consumer_waiting_its_turn_shows_progress(  # type: ignore[no-untyped-def]
        monkeypatch: pytest.MonkeyPatch, fake: _FakeTime, settings) -> None:
    """Other processes' looks stand in for its own: the stall watch must not see it stuck."""
    settings.TASKS_POLL_INTERVAL = 60.0
    monkeypatch.setattr(slots_module, "time", fake)
    consumer = make_consumer()
    ages: list[float] = []

    class Flag:
        def is_set(self) -> bool:
            return fake.now > 1100

        def wait(self, timeout: float | None = None) -> bool:
            ages.append(fake.now - consumer.slot.progress)
            fake.sleep(timeout or 0.0)
            return False

    consumer.stop = Flag()
    consumer.run()
    assert len(ages) > 100 and max(ages) == 0.0  # marked before every slice of waiting


def test_idle_consumers_of_one_worker_take_turns(  # type: ignore[no-untyped-def]
        settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Four consumers sharing their turns look at idle queues about as often as one."""
    settings.TASKS_POLL_INTERVAL = 0.2
    stop = threading.Event()
    turns = idle.LookTurns()
    consumers = [Consumer(queues=["default"], owner=f"test/{n}", hostname="test@host",
                          prefetch=16, lease=30, stop=stop, turns=turns) for n in range(4)]
    fetches: list[float] = []
    broker = consumers[0].broker
    fetch = broker.fetch

    def counted_fetch(*args: object, **kwargs: object) -> list[object]:
        fetches.append(time.monotonic())
        return fetch(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(broker, "fetch", counted_fetch)
    threads = [threading.Thread(target=c.run) for c in consumers]
    for thread in threads:
        thread.start()
    stop.wait(2.0)
    stop.set()
    for thread in threads:
        thread.join()
    # One consumer alone: its first look, about 8 while the pause doubles from 1 ms to
    # 0.2 s, then one each 0.2 s: about 17 in 2 s. Four on their own would make about 68.
    assert 4 <= len(fetches) <= 30, len(fetches)


@shared_task(name="unit.worker.nap")
def nap() -> None:
    time.sleep(0.2)


def test_a_consumer_busy_for_a_while_stops_listening_for_wake_ups(
        monkeypatch: pytest.MonkeyPatch) -> None:
    stop = threading.Event()
    consumer = make_consumer(stop)
    stopped_waiting: list[float] = []
    monkeypatch.setattr(consumer.broker, "stop_waiting",
                        lambda: stopped_waiting.append(time.monotonic()))
    for n in range(12):
        send(Message(id=f"nap-{n}", task="unit.worker.nap"))
    started = time.monotonic()

    def wait(queues: object, timeout: float, **kwargs: object) -> bool:
        stop.set()  # the queue ran dry
        return False

    monkeypatch.setattr(consumer.broker, "wait", wait)
    consumer.run()
    # 2.4 s of tasks, fetched in batches of 1, 2, 4 and 5 (what fits in HOLD_SECONDS): the
    # first fetches keep listening, those after BUSY_SECONDS stop it.
    assert stopped_waiting
    assert min(stopped_waiting) - started > consumer_module.BUSY_SECONDS


class StopWhen:
    """A consumer's stop flag that is set once ``done()`` is true, and never waits (the
    back-off between failed fetches passes at once)."""

    def __init__(self, done: Callable[[], bool]) -> None:
        self.done = done

    def is_set(self) -> bool:
        return self.done()

    def wait(self, timeout: float | None = None) -> bool:
        return False


def test_an_outage_is_logged_once_and_its_end_once(monkeypatch: pytest.MonkeyPatch,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    consumer = make_consumer()
    calls = []
    fetch = consumer.broker.fetch

    def flaky_fetch(*args: object, **kwargs: object) -> list[object]:
        calls.append(1)
        if len(calls) <= 5:
            raise ConnectionError("broker away")
        return fetch(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(consumer.broker, "fetch", flaky_fetch)
    consumer.stop = StopWhen(lambda: len(calls) >= 7)
    with caplog.at_level("DEBUG", "django_tasks.worker"):
        consumer.run()
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 2, warnings
    assert "Cannot fetch from the broker (broker away)" in warnings[0]
    assert warnings[1] == "The broker answers again, after 5 failed fetches"


def test_what_a_fetch_leased_before_its_answer_was_lost_goes_back_and_runs(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """The broker leased a batch and then went away before answering: the heartbeat renews
    every lease of the process's name, so the batch would stay with a live process that
    never saw it. The next fetch after the outage hands it back first, uncounted."""
    consumer = make_consumer()
    ids = [send(build_message("unit.worker.echo", (i,), {})) for i in range(3)]
    fetch = consumer.broker.fetch
    lost: list[int] = []
    counts: list[int] = []

    def answer_lost(*args: object, **kwargs: object) -> list[object]:
        got = fetch(*args, **kwargs)  # type: ignore[arg-type]
        if not lost:
            lost.append(len(got))
            raise ConnectionError("connection closed by the broker")
        counts.extend(d.deliveries for d in got)
        return got  # type: ignore[return-value]

    monkeypatch.setattr(consumer.broker, "fetch", answer_lost)
    consumer.stop = StopWhen(lambda: len(calls) >= 3)
    with caplog.at_level("WARNING", "django_tasks.worker"):
        consumer.run()
    assert lost == [1]
    assert [meta(i).result for i in ids] == [0, 1, 2]
    assert counts == [1, 1, 1]  # the lost delivery was not counted
    assert any("1 message(s) leased by a fetch whose answer was lost went back"
               in r.getMessage() for r in caplog.records)
