"""Rate limits: reading rates, the shared buckets (memory, database, Redis), ``defer`` on
every broker, and the worker's ``RateLimit`` hook on the memory broker with a frozen clock.

The database buckets run on the database of the test run: run this file with a PostgreSQL
``DATABASE_URL`` for concurrent takers on PostgreSQL (and on SQLite by default).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.core.checks import run_checks
from django.db import connections
from django.test import override_settings

from django_tasks import clock as clock_module
from django_tasks import states
from django_tasks.brokers.base import Broker
from django_tasks.brokers.buckets import DatabaseBuckets, MemoryBuckets, RateBuckets
from django_tasks.conf import get_broker, get_result_store
from django_tasks.exceptions import ConfigurationError
from django_tasks.message import Message
from django_tasks.ratelimit import SLOT_HEADER, RateError, bucket_name, parse_rate, rate_of
from django_tasks.task import build_message
from django_tasks.worker.consumer import Consumer
from django_tasks.worker.ratelimit import LATE_SECONDS, WAKE_AFTER_SECONDS

from .conftest import Clock, flushed_redis

ran: list[tuple[str, float]] = []


# -- reading a rate -----------------------------------------------------------------------


@pytest.mark.parametrize(("value", "per_second"), [
    ("10/s", 10.0), ("100/m", 100 / 60), ("1000/h", 1000 / 3600), ("5", 5.0), (2, 2.0),
    ("0.5/s", 0.5), (" 3 / m ", 3 / 60), (None, None), (0, None), ("0/s", None),
])
def test_rates_read_as_celery_reads_them(value: Any, per_second: float | None) -> None:
    assert parse_rate(value) == pytest.approx(per_second) if per_second else \
        parse_rate(value) is None


@pytest.mark.parametrize(("value", "says"), [
    ("10/x", "the unit after '/' must be s, m or h"), ("-1/s", "must be 0 or more"),
    ("ten/s", "is not a number"), ("inf/s", "must be 0 or more"), (True, "give a string"),
    ([10], "give a string"),
])
def test_a_bad_rate_is_a_clear_error_at_decoration(define: Callable[..., Any], value: Any,
                                                   says: str) -> None:
    with pytest.raises(RateError, match=says):
        parse_rate(value)
    with pytest.raises(ConfigurationError, match=f"@shared_task on .*{says}"):
        define(name="unit.rates.bad", rate_limit=value)(lambda: None)


def test_celerys_setting_name_as_an_option_is_taken(define: Callable[..., Any]) -> None:
    task = define(name="unit.rates.celery", task_rate_limit="5/m")(lambda: None)
    assert task.rate_limit == "5/m" and rate_of(task) == pytest.approx(5 / 60)


def test_the_default_setting_applies_where_a_task_has_none(define: Callable[..., Any]) -> None:
    plain = define(name="unit.rates.plain")(lambda: None)
    free = define(name="unit.rates.free", rate_limit=0)(lambda: None)
    assert rate_of(plain) is None
    with override_settings(TASKS_DEFAULT_RATE_LIMIT="30/m"):
        assert rate_of(plain) == 0.5 and rate_of(free) is None


@pytest.mark.parametrize("value", ["10/x", "-1/s", 1.5j])
def test_a_bad_default_setting_is_a_system_check_error(value: Any) -> None:
    with override_settings(TASKS_DEFAULT_RATE_LIMIT=value):
        errors = [e for e in run_checks() if e.id == "django_tasks.E012"]
    assert errors and "TASKS_DEFAULT_RATE_LIMIT" in errors[0].msg
    assert "'10/s', '100/m' or '1000/h'" in errors[0].msg


def test_celerys_setting_is_named(settings: Any) -> None:
    settings.CELERY_TASK_DEFAULT_RATE_LIMIT = "10/s"
    warnings = [w for w in run_checks() if w.id == "django_tasks.W003"]
    assert any("TASKS_DEFAULT_RATE_LIMIT" in w.msg for w in warnings)


# -- the buckets ----------------------------------------------------------------------------


def spaced(slots: list[float], interval: float) -> bool:
    ordered = sorted(slots)
    return all(b - a >= interval - 1e-6 for a, b in itertools.pairwise(ordered))


def test_a_bucket_hands_out_slots_one_interval_apart() -> None:
    buckets = MemoryBuckets()
    assert [buckets.reserve("t", 0.1, 100.0) for _ in range(3)] == \
        pytest.approx([100.0, 100.1, 100.2])
    assert buckets.reserve("other", 0.1, 100.0) == 100.0  # a bucket per task
    assert buckets.reserve("t", 0.1, 200.0) == 200.0  # an idle bucket keeps no burst
    buckets.reset("t")
    assert buckets.reserve("t", 0.1, 150.0) == 150.0


def take_concurrently(make: Callable[[], RateBuckets], takers: int = 4,
                      each: int = 50, interval: float = 0.01) -> list[float]:
    slots: list[float] = []
    errors: list[BaseException] = []
    start = threading.Barrier(takers)
    lock = threading.Lock()

    def take() -> None:
        try:
            buckets = make()
            start.wait()
            mine = [buckets.reserve("unit.rates.shared", interval, 1000.0 + n * 0.001)
                    for n in range(each)]
            with lock:
                slots.extend(mine)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=take) for _ in range(takers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert len(slots) == takers * each
    return slots


def test_concurrent_takers_of_the_memory_bucket_never_exceed_the_rate() -> None:
    shared = MemoryBuckets()
    slots = take_concurrently(lambda: shared)
    assert spaced(slots, 0.01) and min(slots) == 1000.0


@pytest.mark.django_db(transaction=True)
def test_concurrent_takers_of_the_database_bucket_never_exceed_the_rate() -> None:
    """Each thread has its own connection: PostgreSQL's upsert locks the row, SQLite's
    writers take turns; every slot is distinct and an interval from the next."""
    from django_tasks.models import RateBucket

    slots = take_concurrently(lambda: DatabaseBuckets("default"))
    assert spaced(slots, 0.01) and min(slots) == pytest.approx(1000.0)
    assert RateBucket.objects.get(name="unit.rates.shared").free_at == \
        pytest.approx(max(slots) + 0.01)
    DatabaseBuckets("default").reset("unit.rates.shared")
    assert not RateBucket.objects.exists()


def test_concurrent_takers_of_the_redis_bucket_never_exceed_the_rate(clock: Clock) -> None:
    broker = next(flushed_redis())
    try:
        slots = take_concurrently(broker.rate_buckets)
        assert spaced(slots, 0.01) and min(slots) == pytest.approx(1000.0)
        ttl = broker._client.pttl(f"{broker.prefix}:rate:unit.rates.shared")
        assert 60_000 < ttl <= 62_100  # kept a minute past its last slot, then forgotten
        broker.rate_buckets().reset("unit.rates.shared")
        assert broker.rate_buckets().reserve("unit.rates.shared", 1.0, 5.0) == 5.0
    finally:
        broker.close()


# -- defer, on every broker -----------------------------------------------------------------


def test_defer_hands_back_uncounted_with_its_runs_after_the_delay(any_broker: Broker,
                                                                   clock: Clock) -> None:
    message = Message(id="d1", task="unit.rates.t")
    any_broker.publish([message])
    first = any_broker.fetch(["default"], "w1", 1, 30)[0]
    any_broker.release_owner("w1", keep_count=[first.tag], died_running=[first.tag])
    second = any_broker.fetch(["default"], "w1", 1, 30)[0]
    assert (second.deliveries, second.runs) == (2, 1)
    later = message.replace(headers={SLOT_HEADER: 123.5})
    assert any_broker.defer(second, later, 5.0)
    assert any_broker.fetch(["default"], "w1", 1, 30) == []
    clock.advance(5.1)
    third = any_broker.fetch(["default"], "w1", 1, 30)[0]
    assert (third.deliveries, third.runs) == (2, 1)  # the deferral did not count
    assert Message.decode(third.body).headers[SLOT_HEADER] == 123.5
    assert not any_broker.defer(second, later, 1.0)  # an old lease is refused


# -- the worker's hook, on the memory broker with a frozen clock ---------------------------


@pytest.fixture
def frozen(memory_tasks: None, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    monkeypatch.setattr(clock_module, "now", clock)
    ran.clear()
    yield clock
    ran.clear()


def consumer() -> Consumer:
    return Consumer(queues=["default"], owner="test/1", hostname="test@host", prefetch=64,
                    lease=30, stop=threading.Event())


def drain(c: Consumer) -> None:
    while deliveries := get_broker().fetch(["default"], c.owner, 64, 30):
        c.process(deliveries)


def send(name: str, count: int) -> list[str]:
    messages = [build_message(name, (n,), {}) for n in range(count)]
    get_result_store().create_pending(messages)
    get_broker().publish(messages)
    return [m.id for m in messages]


@pytest.fixture
def limited(define: Callable[..., Any], frozen: Clock) -> Any:
    @define(name="unit.rates.limited", rate_limit="10/s", bind=True)
    def limited(self: Any, n: int) -> int:
        ran.append((str(n), frozen.now.timestamp()))
        assert SLOT_HEADER not in self.request.headers
        return n

    return limited


def test_a_limited_task_waits_in_the_broker_for_its_slot(limited: Any, frozen: Clock) -> None:
    ids = send(limited.name, 5)
    c = consumer()
    start = frozen.now.timestamp()
    drain(c)
    assert [n for n, _ in ran] == ["0"]  # one ran; four wait in the broker, for their slots
    assert get_broker().depths(["default"]) == {"default": 4}
    rows = get_broker()._rows.values()  # type: ignore[attr-defined]
    assert {r.deliveries for r in rows} == {0} and {r.owner for r in rows} == {None}
    slots = sorted(Message.decode(r.body).headers[SLOT_HEADER] for r in rows)
    assert slots == pytest.approx([start + 0.1 * n for n in range(1, 5)])
    for _ in range(4):
        frozen.advance(0.1)
        drain(c)
    assert [n for n, _ in ran] == ["0", "1", "2", "3", "4"]
    times = [t for _, t in ran]
    assert all(b - a >= 0.1 - 1e-6 for a, b in itertools.pairwise(times))
    assert {get_result_store().get(i).state for i in ids} == {states.SUCCESS}
    assert get_result_store().get(ids[1]).retries == 0  # waiting is not a retry


def test_other_tasks_pass_while_a_limited_one_waits(limited: Any, define: Callable[..., Any],
                                                    frozen: Clock) -> None:
    @define(name="unit.rates.free")
    def free(n: int) -> None:
        ran.append((f"free{n}", frozen.now.timestamp()))

    send(limited.name, 3)
    send(free.name, 3)
    drain(consumer())
    assert sorted(n for n, _ in ran) == ["0", "free0", "free1", "free2"]


def test_a_message_back_too_late_for_its_slot_takes_a_new_one(limited: Any,
                                                              frozen: Clock) -> None:
    send(limited.name, 3)
    c = consumer()
    drain(c)
    frozen.advance(LATE_SECONDS + 1)  # the workers were away: both slots went by
    drain(c)
    assert [n for n, _ in ran] == ["0", "1"]  # not both at once: one now, one later
    frozen.advance(0.1)
    drain(c)
    assert [n for n, _ in ran] == ["0", "1", "2"]


def test_an_idle_consumer_wakes_for_the_messages_it_deferred(limited: Any,
                                                             frozen: Clock) -> None:
    send(limited.name, 2)
    c = consumer()
    drain(c)
    due = c.due.seconds()
    assert due is not None and 0.05 < due <= 0.1 + WAKE_AFTER_SECONDS  # the next slot


def test_an_at_most_once_task_is_not_acked_while_it_waits(define: Callable[..., Any],
                                                          frozen: Clock) -> None:
    @define(name="unit.rates.once", rate_limit="1/s", acks_late=False)
    def once(n: int) -> None:
        ran.append((str(n), frozen.now.timestamp()))

    send(once.name, 2)
    c = consumer()
    drain(c)
    assert [n for n, _ in ran] == ["0"]
    assert get_broker().depths(["default"]) == {"default": 1}  # waiting, not acked
    frozen.advance(1.0)
    drain(c)
    assert [n for n, _ in ran] == ["0", "1"]
    assert get_broker().depths(["default"]) == {"default": 0}


def test_the_default_rate_limit_applies_in_the_worker(define: Callable[..., Any],
                                                      frozen: Clock) -> None:
    @define(name="unit.rates.defaulted")
    def defaulted(n: int) -> None:
        ran.append((str(n), frozen.now.timestamp()))

    with override_settings(TASKS_DEFAULT_RATE_LIMIT="60/m"):  # a new memory broker
        send(defaulted.name, 3)
        drain(consumer())
        assert len(ran) == 1
        frozen.advance(1.0)
        drain(consumer())
    assert len(ran) == 2


def test_each_rate_has_a_bucket_of_its_own() -> None:
    assert bucket_name("app.tasks.call", 0.1) == "app.tasks.call@0.1"
    long = bucket_name("t" * 300, 1 / 3)
    assert len(long) == 255 and long.endswith("@0.333333333")
    assert long != bucket_name("t" * 299 + "u", 1 / 3)  # a digest of the whole name


def test_a_changed_rate_takes_effect_for_waiting_messages(limited: Any, frozen: Clock) -> None:
    send(limited.name, 3)
    c = consumer()
    drain(c)
    limited.rate_limit = "1/s"  # what a later control command will do, in each worker
    frozen.advance(0.1)
    drain(c)  # back at its 10/s slot: the new rate's bucket is free, so it runs
    frozen.advance(0.1)
    drain(c)  # back at its 10/s slot: it waits for a slot of the new rate instead
    assert [n for n, _ in ran] == ["0", "1"]
    frozen.advance(0.9)
    drain(c)
    assert [n for n, _ in ran] == ["0", "1", "2"]
