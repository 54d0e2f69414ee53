"""Running tasks: eager mode through the JSON round trip, bound requests, retries, backoff."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from typing import Any

import pytest
from django.test import override_settings

from django_tasks import EagerResult, MaxRetriesExceededError, Retry, send_task, states
from django_tasks.conf import get_broker
from django_tasks.result import AsyncResult
from django_tasks.task import Task, build_message, run_message

pytestmark = pytest.mark.usefixtures("memory_tasks")

Define = Callable[..., Any]


class PaymentDeclined(Exception):
    pass


@pytest.fixture
def eager() -> Any:
    with override_settings(TASKS_ALWAYS_EAGER=True):
        yield


# -- eager mode ----------------------------------------------------------------------------


@pytest.mark.usefixtures("eager")
def test_eager_delay_runs_through_json(define: Define) -> None:
    seen: list[Any] = []

    @define(name="unit.running.kinds")
    def kinds(moment: dt.datetime, items: tuple[int, ...]) -> set[str]:
        seen.extend([moment, items])
        return {"only"}

    moment = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
    result = kinds.delay(moment, (1, 2))
    assert isinstance(result, EagerResult)
    assert seen == [moment, [1, 2]]  # the datetime survives, the tuple becomes a list
    assert isinstance(seen[0], dt.datetime) and seen[0].tzinfo is not None
    assert result.get() == ["only"]  # a set comes back as a list
    assert result.state == states.SUCCESS and result.successful() and result.ready()
    assert get_broker().depths() == {}
    assert AsyncResult(result.id).get() == ["only"]  # stored in the result store as well


@pytest.mark.usefixtures("eager")
def test_eager_propagates_the_tasks_own_exception(define: Define) -> None:
    @define(name="unit.running.declined")
    def declined(amount: int) -> None:
        raise PaymentDeclined(f"declined {amount}")

    with pytest.raises(PaymentDeclined, match="declined 12"):
        declined.delay(12)


@pytest.mark.usefixtures("eager")
@override_settings(TASKS_EAGER_PROPAGATES=False)
def test_eager_without_propagation_returns_a_failure(define: Define) -> None:
    @define(name="unit.running.declined_quietly")
    def declined() -> None:
        raise PaymentDeclined("no funds")

    result = declined.delay()
    assert isinstance(result, EagerResult)
    assert result.state == states.FAILURE and result.failed() and result.ready()
    assert isinstance(result.result, PaymentDeclined)
    assert str(result.result) == "no funds"
    assert "PaymentDeclined: no funds" in (result.traceback or "")
    assert isinstance(result.get(propagate=False), PaymentDeclined)
    with pytest.raises(PaymentDeclined):
        result.get()


@pytest.mark.usefixtures("eager")
@override_settings(TASKS_EAGER_PROPAGATES=False)
def test_eager_unserializable_return_value_is_a_failure(define: Define) -> None:
    @define(name="unit.running.returns_object")
    def returns_object() -> object:
        return object()

    result = returns_object.delay()
    assert result.state == states.FAILURE
    assert isinstance(result.result, TypeError)
    assert "return value of unit.running.returns_object" in str(result.result)


@pytest.mark.usefixtures("eager")
def test_eager_send_task_by_name(define: Define) -> None:
    @define(name="unit.running.double")
    def double(x: int) -> int:
        return 2 * x

    assert send_task("unit.running.double", [21]).get() == 42
    assert get_broker().depths() == {}


def test_apply_runs_eagerly_without_the_setting(define: Define) -> None:
    @define(name="unit.running.applied")
    def applied(x: dt.date) -> str:
        return type(x).__name__

    assert applied.apply((dt.date(2024, 1, 1),)).get() == "date"
    assert get_broker().depths() == {}


# -- the request a bound task sees ---------------------------------------------------------


@pytest.fixture
def introspect(define: Define) -> Task[Any, Any]:
    @define(name="unit.running.introspect", bind=True)
    def introspect(self: Task[Any, Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
        r = self.request
        return {"id": r.id, "task": r.task, "args": r.args, "kwargs": r.kwargs,
                "retries": r.retries, "delivery_info": r.delivery_info, "eager": r.is_eager,
                "direct": r.called_directly, "hostname": r.hostname}

    return introspect


@pytest.mark.usefixtures("eager")
def test_bound_task_sees_its_request(introspect: Task[Any, Any]) -> None:
    result = introspect.apply_async((1, "a"), {"k": True}, queue="q", priority=4, task_id="t-1")
    request = result.get()
    assert request == {
        "id": "t-1", "task": "unit.running.introspect", "args": [1, "a"],
        "kwargs": {"k": True}, "retries": 0,
        "delivery_info": {"queue": "q", "routing_key": "q", "priority": 4, "attempts": 1},
        "eager": True, "direct": False, "hostname": "eager",
    }


def test_bound_task_called_directly(introspect: Task[Any, Any]) -> None:
    request = introspect(5, k=1)
    assert (request["args"], request["kwargs"]) == ((5,), {"k": 1})
    assert request["direct"] is True and request["id"] is None


def test_request_outside_a_run_is_empty(introspect: Task[Any, Any]) -> None:
    assert introspect.request.id is None
    assert introspect.request.task == "unit.running.introspect"
    assert introspect.request.called_directly is True


# -- retries -------------------------------------------------------------------------------


@pytest.mark.usefixtures("eager")
def test_retry_runs_again_until_max_retries_then_raises_exc(define: Define) -> None:
    runs: list[int] = []

    @define(name="unit.running.always_retry", bind=True, max_retries=2)
    def always_retry(self: Task[Any, Any]) -> None:
        runs.append(self.request.retries)
        raise self.retry(exc=PaymentDeclined("again"), countdown=30)

    with pytest.raises(PaymentDeclined, match="again"):
        always_retry.delay()
    assert runs == [0, 1, 2]


@pytest.mark.usefixtures("eager")
def test_retry_then_success(define: Define) -> None:
    @define(name="unit.running.flaky", bind=True, max_retries=5)
    def flaky(self: Task[Any, Any], fail_times: int) -> int:
        if self.request.retries < fail_times:
            raise self.retry()
        return self.request.retries

    result = flaky.delay(2)
    assert result.get() == 2 and result.state == states.SUCCESS


@pytest.mark.usefixtures("eager")
def test_retry_max_retries_argument_overrides_the_task(define: Define) -> None:
    runs: list[int] = []

    @define(name="unit.running.override", bind=True, max_retries=1)
    def override(self: Task[Any, Any]) -> None:
        runs.append(self.request.retries)
        raise self.retry(max_retries=3)

    with pytest.raises(MaxRetriesExceededError, match=r"max_retries=3 reached"):
        override.delay()
    assert runs == [0, 1, 2, 3]


def test_retry_reports_the_delay_to_the_worker(define: Define) -> None:
    eta = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=100)

    @define(name="unit.running.delays", bind=True, default_retry_delay=7)
    def delays(self: Task[Any, Any], how: str) -> None:
        if how == "countdown":
            raise self.retry(countdown=12)
        if how == "eta":
            raise self.retry(eta=eta)
        raise self.retry(exc=PaymentDeclined("x"))

    def retry_in(how: str) -> float:
        outcome, delay = run_message(delays, build_message(delays.name, (how,), {}), worker="w")
        assert outcome.state == states.RETRY
        assert delay is not None
        return delay

    assert retry_in("countdown") == 12
    assert 95 <= retry_in("eta") <= 100
    assert retry_in("default") == 7


def test_retry_on_a_directly_called_task_reraises_exc(define: Define) -> None:
    @define(name="unit.running.direct", bind=True)
    def direct(self: Task[Any, Any], with_exc: bool) -> None:
        raise self.retry(exc=PaymentDeclined("direct") if with_exc else None)

    with pytest.raises(PaymentDeclined, match="direct"):
        direct(True)
    with pytest.raises(MaxRetriesExceededError, match="called directly"):
        direct(False)


def test_retry_is_not_a_failure_exception() -> None:
    retry = Retry(exc=ValueError("x"), when=3)
    assert str(retry) == "Retry in 3s" and retry.when == 3


# -- autoretry_for and backoff -------------------------------------------------------------


class FakeRandom:
    """Stands in for ``random`` in django_tasks.task: records bounds, returns the top one."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, float]] = []

    def uniform(self, low: float, high: float) -> float:
        self.calls.append((low, high))
        return high


def run_at(task: Task[Any, Any], retries: int) -> tuple[str, float | None]:
    message = build_message(task.name, (), {}).replace(retries=retries)
    outcome, delay = run_message(task, message, worker="w")
    return outcome.state, delay


def test_autoretry_backoff_jitter_stays_within_bounds(
    define: Define, monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = FakeRandom()
    monkeypatch.setattr("django_tasks.task.random", fake)

    @define(name="unit.running.backoff", autoretry_for=(OSError,), retry_backoff=True,
            retry_backoff_max=10, max_retries=None)
    def backoff() -> None:
        raise ConnectionError("down")  # an OSError

    for retries in range(7):
        state, delay = run_at(backoff, retries)
        bound = min(10, 2**retries)
        assert state == states.RETRY
        assert fake.calls[-1] == (0, bound)
        assert delay == bound


def test_autoretry_backoff_with_real_jitter(define: Define) -> None:
    random.seed(1234)

    @define(name="unit.running.jitter", autoretry_for=(OSError,), retry_backoff=True,
            retry_backoff_max=10, max_retries=None)
    def jitter() -> None:
        raise OSError("down")

    for retries in list(range(6)) * 20:
        _, delay = run_at(jitter, retries)
        assert delay is not None and 0 <= delay <= min(10, 2**retries)


def test_autoretry_backoff_factor_without_jitter(define: Define) -> None:
    @define(name="unit.running.factor", autoretry_for=(OSError,), retry_backoff=3,
            retry_backoff_max=20, retry_jitter=False, max_retries=None)
    def factor() -> None:
        raise OSError("down")

    assert [run_at(factor, r)[1] for r in range(4)] == [3, 6, 12, 20]


def test_autoretry_without_backoff_uses_default_retry_delay(define: Define) -> None:
    @define(name="unit.running.fixed", autoretry_for=(OSError,), default_retry_delay=9)
    def fixed() -> None:
        raise OSError("down")

    assert run_at(fixed, 0) == (states.RETRY, 9)


def test_autoretry_ignores_other_exceptions(define: Define) -> None:
    @define(name="unit.running.other", autoretry_for=(OSError,))
    def other() -> None:
        raise PaymentDeclined("not retried")

    assert run_at(other, 0) == (states.FAILURE, None)


@pytest.mark.usefixtures("eager")
def test_autoretry_gives_up_after_max_retries_with_the_original_error(define: Define) -> None:
    runs: list[int] = []

    @define(name="unit.running.give_up", bind=True, autoretry_for=(PaymentDeclined,),
            max_retries=2)
    def give_up(self: Task[Any, Any]) -> None:
        runs.append(self.request.retries)
        raise PaymentDeclined("still declined")

    with pytest.raises(PaymentDeclined, match="still declined"):
        give_up.delay()
    assert runs == [0, 1, 2]
