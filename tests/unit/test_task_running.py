"""Running tasks: eager mode through the JSON round trip, and the request a bound task sees."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from django.test import override_settings

from django_tasks import EagerResult, send_task, states
from django_tasks.conf import get_broker
from django_tasks.result import AsyncResult
from django_tasks.task import Task

pytestmark = pytest.mark.usefixtures("memory_tasks")

Define = Callable[..., Any]


class PaymentDeclined(Exception):
    pass


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
