"""Retrying tasks: ``self.retry()``, ``autoretry_for`` and exponential backoff with jitter."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from django_tasks import MaxRetriesExceededError, Retry, states
from django_tasks.task import Task, build_message, run_message

pytestmark = pytest.mark.usefixtures("memory_tasks")

Define = Callable[..., Any]


class PaymentDeclined(Exception):
    pass


# -- retries -------------------------------------------------------------------------------


@pytest.mark.usefixtures("eager")
def test_retry_runs_again_until_max_retries_then_raises_exc(define: Define) -> None:
    runs: list[int] = []

    @define(name="unit.retry.always_retry", bind=True, max_retries=2)
    def always_retry(self: Task[Any, Any]) -> None:
        runs.append(self.request.retries)
        raise self.retry(exc=PaymentDeclined("again"), countdown=30)

    with pytest.raises(PaymentDeclined, match="again"):
        always_retry.delay()
    assert runs == [0, 1, 2]


@pytest.mark.usefixtures("eager")
def test_retry_then_success(define: Define) -> None:
    @define(name="unit.retry.flaky", bind=True, max_retries=5)
    def flaky(self: Task[Any, Any], fail_times: int) -> int:
        if self.request.retries < fail_times:
            raise self.retry()
        return self.request.retries

    result = flaky.delay(2)
    assert result.get() == 2 and result.state == states.SUCCESS


@pytest.mark.usefixtures("eager")
def test_retry_max_retries_argument_overrides_the_task(define: Define) -> None:
    runs: list[int] = []

    @define(name="unit.retry.override", bind=True, max_retries=1)
    def override(self: Task[Any, Any]) -> None:
        runs.append(self.request.retries)
        raise self.retry(max_retries=3)

    with pytest.raises(MaxRetriesExceededError, match=r"max_retries=3 reached"):
        override.delay()
    assert runs == [0, 1, 2, 3]


def test_retry_reports_the_delay_to_the_worker(define: Define) -> None:
    eta = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=100)

    @define(name="unit.retry.delays", bind=True, default_retry_delay=7)
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
    @define(name="unit.retry.direct", bind=True)
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

    @define(name="unit.retry.backoff", autoretry_for=(OSError,), retry_backoff=True,
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
    @define(name="unit.retry.jitter", autoretry_for=(OSError,), retry_backoff=True,
            retry_backoff_max=10, max_retries=None)
    def jitter() -> None:
        raise OSError("down")

    for retries in list(range(6)) * 20:
        _, delay = run_at(jitter, retries)
        assert delay is not None and 0 <= delay <= min(10, 2**retries)


def test_autoretry_backoff_factor_without_jitter(define: Define) -> None:
    @define(name="unit.retry.factor", autoretry_for=(OSError,), retry_backoff=3,
            retry_backoff_max=20, retry_jitter=False, max_retries=None)
    def factor() -> None:
        raise OSError("down")

    assert [run_at(factor, r)[1] for r in range(4)] == [3, 6, 12, 20]


def test_autoretry_without_backoff_uses_default_retry_delay(define: Define) -> None:
    @define(name="unit.retry.fixed", autoretry_for=(OSError,), default_retry_delay=9)
    def fixed() -> None:
        raise OSError("down")

    assert run_at(fixed, 0) == (states.RETRY, 9)


def test_autoretry_ignores_other_exceptions(define: Define) -> None:
    @define(name="unit.retry.other", autoretry_for=(OSError,))
    def other() -> None:
        raise PaymentDeclined("not retried")

    assert run_at(other, 0) == (states.FAILURE, None)


@pytest.mark.usefixtures("eager")
def test_autoretry_gives_up_after_max_retries_with_the_original_error(define: Define) -> None:
    runs: list[int] = []

    @define(name="unit.retry.give_up", bind=True, autoretry_for=(PaymentDeclined,),
            max_retries=2)
    def give_up(self: Task[Any, Any]) -> None:
        runs.append(self.request.retries)
        raise PaymentDeclined("still declined")

    with pytest.raises(PaymentDeclined, match="still declined"):
        give_up.delay()
    assert runs == [0, 1, 2]
