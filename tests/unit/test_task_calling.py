"""Defining tasks and queueing them: options checked at definition, arguments at ``delay()``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from django_tasks import AsyncResult, send_task, shared_task
from django_tasks.conf import get_broker, get_result_store
from django_tasks.exceptions import ConfigurationError, EncodeError
from django_tasks.message import Message
from django_tasks.registry import registry
from django_tasks.task import Task

from .conftest import Clock, nested_list

pytestmark = pytest.mark.usefixtures("memory_tasks")


def fetch_one(queue: str = "default") -> Message:
    deliveries = get_broker().fetch([queue], "owner", 10, 30)
    assert len(deliveries) == 1, deliveries
    return Message.decode(deliveries[0].body)


@pytest.fixture
def add(define: Callable[..., Any]) -> Task[Any, Any]:
    @define(name="unit.calling.add")
    def add(x: int, y: int = 0) -> int:
        return x + y

    return add


# -- defining ------------------------------------------------------------------------------


def test_shared_task_without_arguments(define: Callable[..., Any]) -> None:
    @define
    def plain(x: int) -> int:
        """Doubles."""
        return 2 * x

    assert isinstance(plain, Task)
    assert plain.name == f"{__name__}.test_shared_task_without_arguments.<locals>.plain"
    assert registry.get(plain.name) is plain
    assert plain.__doc__ == "Doubles." and vars(plain)["__name__"] == "plain"
    assert repr(plain) == f"<@task: {plain.name}>"


def test_shared_task_with_arguments(define: Callable[..., Any]) -> None:
    @define(name="unit.calling.named", queue="mail", priority=5, max_retries=7)
    def named() -> None: ...

    assert named.name == "unit.calling.named"
    assert (named.queue, named.priority, named.max_retries) == ("mail", 5, 7)


def test_default_name_is_module_and_qualname(define: Callable[..., Any]) -> None:
    class Holder:
        @staticmethod
        def method() -> None: ...

    task = define(Holder.method)
    assert task.name == f"{__name__}.{Holder.method.__qualname__}"
    assert task.name.endswith("Holder.method")


def test_the_demo_task_name() -> None:
    from testproject.demo.tasks import add

    assert add.name == "testproject.demo.tasks.add"


def test_shared_task_with_a_function_and_options_is_a_type_error() -> None:
    def fn() -> None: ...

    with pytest.raises(TypeError, match="not both"):
        shared_task(fn, name="x")  # type: ignore[call-overload]


def _takes_self(self: Any) -> None: ...


def _takes_nothing() -> None: ...


@pytest.mark.parametrize(
    ("fn", "options", "match"),
    [
        (_takes_nothing, {"serializer": "pickle"}, "serializer='pickle' is not supported"),
        (_takes_nothing, {"priority": 10}, "priority must be an int from 0 to 9"),
        (_takes_nothing, {"priority": -1}, "priority must be an int from 0 to 9"),
        (_takes_nothing, {"priority": "high"}, "priority must be an int from 0 to 9"),
        (_takes_nothing, {"queue": ""}, "queue must be a non-empty string"),
        (_takes_nothing, {"queue": 5}, "queue must be a non-empty string"),
        (_takes_nothing, {"bind": True}, "add a 'self' parameter"),
        (_takes_self, {"autoretry_for": (ValueError, "OSError")},
         "autoretry_for must hold exception types"),
        (_takes_self, {"autoretry_for": (int,)}, "autoretry_for must hold exception types"),
    ],
)
def test_bad_options_fail_at_definition(fn: Callable[..., Any], options: dict[str, Any],
                                        match: str) -> None:
    name = "unit.calling.badly_defined"
    with pytest.raises(ConfigurationError, match=match) as info:
        shared_task(name=name, **options)(fn)
    assert f"@shared_task on {__name__}.{fn.__name__}" in str(info.value)
    assert name not in registry


# -- calling -------------------------------------------------------------------------------


def test_calling_a_task_runs_it_inline(add: Task[Any, Any]) -> None:
    assert add(2, y=3) == 5
    assert get_broker().depths() == {}
    assert get_result_store().get("anything") is None


def test_delay_with_wrong_arguments_publishes_nothing(add: Task[Any, Any]) -> None:
    with pytest.raises(TypeError, match=r"^unit\.calling\.add\(x.*too many positional"):
        add.delay(1, 2, 3)
    with pytest.raises(TypeError, match="missing a required argument: 'x'"):
        add.delay()
    with pytest.raises(TypeError, match="unexpected keyword argument 'z'"):
        add.apply_async((1,), {"z": 2})
    assert get_broker().depths() == {}


def test_positional_calls_are_counted_against_the_signature() -> None:
    """A call without keyword arguments is checked by counting (the fast way) exactly where
    binding would accept it; *args, keyword-only parameters and bound tasks too."""
    from django_tasks.task import Task

    def plain(a: int, b: int, c: int = 0) -> None: ...
    def star(a: int, *rest: int) -> None: ...
    def keyword_only(a: int, *, b: int) -> None: ...
    def bound(self: Any, a: int, b: int = 0) -> None: ...

    cases = [(plain, False), (star, False), (keyword_only, False), (bound, True)]
    for fn, bind in cases:
        task: Task[Any, Any] = Task(fn, name=f"unit.calling.arity.{fn.__name__}", bind=bind)
        for count in range(5):
            args = tuple(range(count))
            try:
                task._signature.bind(*((None,) if bind else ()), *args)
            except TypeError:
                with pytest.raises(TypeError, match=fn.__name__):
                    task.check_arguments(args, {})
            else:
                task.check_arguments(args, {})


def test_delay_with_unserializable_arguments_publishes_nothing(add: Task[Any, Any]) -> None:
    with pytest.raises(TypeError) as info:
        add.delay(object())
    assert isinstance(info.value, EncodeError)
    assert "arguments of task 'unit.calling.add'" in str(info.value)
    assert get_broker().depths() == {}


def test_delay_publishes_and_records_pending(add: Task[Any, Any]) -> None:
    result = add.delay(2, y=3)
    assert isinstance(result, AsyncResult)
    assert get_broker().depths() == {"default": 1}
    assert result.state == "PENDING" and result.exists()
    message = fetch_one()
    assert (message.id, message.task) == (result.id, "unit.calling.add")
    assert (message.args, message.kwargs) == ((2,), {"y": 3})


def test_apply_async_options_land_in_the_message(add: Task[Any, Any]) -> None:
    eta = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    result = add.apply_async(
        (1,), {"y": 2}, eta=eta, expires=60, queue="other", priority=8,
        task_id="my-id", headers={"x-tenant": "t1"},
    )
    assert result.id == "my-id"
    assert get_broker().depths() == {"other": 1}
    message = fetch_one("other")
    assert message.id == "my-id" and message.queue == "other"
    assert message.eta == eta
    assert message.priority == 8
    assert message.headers == {"x-tenant": "t1"}
    assert message.expires is not None
    expected = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=60)
    assert abs((message.expires - expected).total_seconds()) < 5


def test_countdown_message_is_invisible_until_due(add: Task[Any, Any], clock: Clock) -> None:
    before = dt.datetime.now(dt.UTC)
    add.apply_async((1,), countdown=60)
    assert get_broker().depths() == {"default": 1}
    assert get_broker().fetch(["default"], "owner", 10, 30) == []
    clock.advance(61)
    message = fetch_one()
    assert message.eta is not None
    assert 59 <= (message.eta - before).total_seconds() <= 65


def test_naive_eta_is_taken_as_utc(add: Task[Any, Any]) -> None:
    add.apply_async((1,), eta=dt.datetime(2000, 1, 1, 12))
    assert fetch_one().eta == dt.datetime(2000, 1, 1, 12, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    "expires",
    [dt.timedelta(minutes=5), dt.datetime(2031, 1, 1, tzinfo=dt.UTC), 300.0],
)
def test_expires_forms(add: Task[Any, Any], expires: Any) -> None:
    add.apply_async((1,), expires=expires)
    message = fetch_one()
    assert message.expires is not None and message.expires.tzinfo is not None
    if isinstance(expires, dt.datetime):
        assert message.expires == expires


def test_task_defaults_apply_and_call_options_override(define: Callable[..., Any]) -> None:
    @define(name="unit.calling.routed", queue="mail", priority=3)
    def routed() -> None: ...

    routed.delay()
    routed.apply_async(queue="urgent", priority=0)
    first, second = fetch_one("mail"), fetch_one("urgent")
    assert (first.queue, first.priority) == ("mail", 3)
    assert (second.queue, second.priority) == ("urgent", 0)


def test_task_expires_option_lands_in_the_message(define: Callable[..., Any]) -> None:
    @define(name="unit.calling.perishable", expires=dt.timedelta(minutes=10))
    def perishable() -> None: ...

    before = dt.datetime.now(dt.UTC)
    perishable.delay()
    expires = fetch_one().expires
    assert expires is not None
    assert 595 <= (expires - before).total_seconds() <= 605


def test_countdown_and_eta_together_is_a_type_error(add: Task[Any, Any]) -> None:
    with pytest.raises(TypeError, match="either countdown= or eta="):
        add.apply_async((1,), countdown=5, eta=dt.datetime.now(dt.UTC))
    assert get_broker().depths() == {}


@pytest.mark.parametrize("priority", [10, -1, "9"])
def test_a_bad_priority_at_call_time_is_a_type_error(add: Task[Any, Any], priority: Any) -> None:
    with pytest.raises(TypeError, match="priority must be an int from 0 to 9"):
        add.apply_async((1,), priority=priority)
    assert get_broker().depths() == {}


def test_ignore_result_publishes_without_a_pending_row(define: Callable[..., Any]) -> None:
    @define(name="unit.calling.quiet", ignore_result=True)
    def quiet() -> None: ...

    result = quiet.delay()
    assert get_result_store().get(result.id) is None
    assert fetch_one().ignore_result is True


# -- send_task -----------------------------------------------------------------------------


def test_send_task_by_name(add: Task[Any, Any]) -> None:
    result = send_task("unit.calling.add", (4,), {"y": 5}, queue="q", priority=2)
    assert result.task_name == "unit.calling.add"
    message = fetch_one("q")
    assert (message.id, message.task) == (result.id, "unit.calling.add")
    assert (message.args, message.kwargs, message.priority) == ((4,), {"y": 5}, 2)


def test_send_task_does_not_need_the_task_here() -> None:
    result = send_task("elsewhere.tasks.remote", [1])
    assert fetch_one().task == "elsewhere.tasks.remote"
    assert result.state == "PENDING"


def test_send_task_rejects_unserializable_arguments() -> None:
    with pytest.raises(EncodeError):
        send_task("elsewhere.tasks.remote", [object()])
    assert get_broker().depths() == {}


# -- what delay() refuses, with a message that says what to fix ------------------------------


@pytest.mark.parametrize(
    ("args", "options", "reason"),
    [
        ((float("nan"),), {}, "Out of range float"),
        (("\ud800",), {}, "lone surrogate"),
        ((nested_list(100_000),), {}, "nested too deeply"),
        ((10 ** 5000,), {}, "integer string conversion"),
        ((1,), {"task_id": "id\x00"}, "task_id .* control character"),
        ((1,), {"task_id": "x" * 256}, "at most 255"),
        ((1,), {"queue": "mail\x00"}, "queue .* control character"),
    ],
    ids=["nan", "surrogate", "deep", "huge-int", "nul-id", "long-id", "nul-queue"],
)
def test_delay_refuses_what_cannot_travel_or_be_stored(
        define: Any, args: tuple[Any, ...], options: dict[str, Any], reason: str) -> None:
    @define(name="unit.calling.one")
    def one(value: object) -> None: ...

    with pytest.raises(EncodeError, match=reason):
        one.apply_async(args, **options)


def test_a_task_name_with_a_control_character_is_refused_at_definition(define: Any) -> None:
    with pytest.raises(ConfigurationError, match="control character"):
        @define(name="unit.calling.bad\x00name")
        def bad() -> None: ...
