"""Celery's task and call options: implemented, or accepted with a one-time warning."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from django_tasks import AsyncResult, states
from django_tasks import options as options_module
from django_tasks.conf import get_broker
from django_tasks.exceptions import ConfigurationError
from django_tasks.message import Message
from django_tasks.task import Task

pytestmark = pytest.mark.usefixtures("memory_tasks")


@pytest.fixture(autouse=True)
def _fresh_warnings() -> Iterator[None]:
    options_module._warned.clear()
    yield
    options_module._warned.clear()


def warnings_in(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "django_tasks" and r.levelno == logging.WARNING]


@pytest.mark.parametrize("option", sorted(options_module.TASK_OPTIONS_WITHOUT_EFFECT))
def test_every_celery_task_option_without_effect_is_accepted(
        define: Callable[..., Any], option: str, caplog: pytest.LogCaptureFixture) -> None:
    task = define(name=f"unit.options.{option.lower()}", **{option: object()})(lambda: 1)
    assert isinstance(task, Task)
    [warning] = warnings_in(caplog)
    assert f"{option}=" in warning and "no effect" in warning


def test_the_warning_is_given_once_per_option_name(
        define: Callable[..., Any], caplog: pytest.LogCaptureFixture) -> None:
    define(name="unit.options.one", reject_on_worker_lost=True)(lambda: 1)
    define(name="unit.options.two", reject_on_worker_lost=True)(lambda: 1)
    warnings = warnings_in(caplog)
    assert len(warnings) == 1
    assert "delivered again, up to TASKS_MAX_DELIVERIES" in warnings[0]


def test_celerys_setting_names_are_taken_as_the_option(
        define: Callable[..., Any], caplog: pytest.LogCaptureFixture) -> None:
    task = define(name="unit.options.limited", task_time_limit=30, task_acks_late=False)(
        lambda: 1)
    assert task.time_limit == 30 and task.acks_late is False
    assert any("task_time_limit= is the name of Celery's setting" in w
               for w in warnings_in(caplog))


def test_an_option_celery_does_not_have_is_still_a_type_error(
        define: Callable[..., Any]) -> None:
    with pytest.raises(TypeError, match="Did you mean max_retries="):
        define(name="unit.options.typo", max_retry=3)(lambda: 1)


def test_retry_kwargs_and_dont_autoretry_for(define: Callable[..., Any]) -> None:
    attempts: list[int] = []

    @define(name="unit.options.flaky", bind=True, autoretry_for=(LookupError,),
            dont_autoretry_for=(KeyError,), retry_kwargs={"max_retries": 2, "countdown": 0})
    def flaky(self: Task[Any, Any], kind: str) -> None:
        attempts.append(self.request.retries)
        raise {"index": IndexError, "key": KeyError}[kind](kind)

    from django.test import override_settings

    with override_settings(TASKS_EAGER_PROPAGATES=False):
        assert flaky.apply(("index",)).state == states.FAILURE
        assert attempts == [0, 1, 2]  # two retries, then the error
        attempts.clear()
        assert flaky.apply(("key",)).state == states.FAILURE
        assert attempts == [0]  # not retried
    with pytest.raises(ConfigurationError, match="retry_kwargs takes"):
        define(name="unit.options.badkw", retry_kwargs={"delay": 1})(lambda: 1)


def test_typing_false_skips_the_argument_check(define: Callable[..., Any]) -> None:
    loose = define(name="unit.options.loose", typing=False)(lambda *a: len(a))
    strict = define(name="unit.options.strict")(lambda x: x)
    loose.delay(1, 2, 3)
    with pytest.raises(TypeError):
        strict.delay(1, 2)


@pytest.mark.parametrize("option", ["routing_key", "exchange", "retry", "retry_policy",
                                    "shadow", "compression", "reply_to"])
def test_call_options_without_effect_are_accepted_with_a_warning(
        define: Callable[..., Any], option: str, caplog: pytest.LogCaptureFixture) -> None:
    task = define(name="unit.options.called")(lambda: 1)
    result = task.apply_async((), **{option: {"max_retries": 3} if "policy" in option else "x"})
    assert isinstance(result, AsyncResult)
    task.apply_async((), **{option: "again"})
    [warning] = warnings_in(caplog)
    assert f"call option {option}=" in warning


def test_call_options_that_are_carried(define: Callable[..., Any]) -> None:
    task = define(name="unit.options.carried")(lambda: 1)
    task.apply_async((), root_id="root-1", parent_id="parent-1", group_id="group-1",
                     serializer="json")
    [delivery] = get_broker().fetch(["default"], "owner", 10, 30)
    message = Message.decode(delivery.body)
    assert (message.root_id, message.parent_id, message.group) == ("root-1", "parent-1",
                                                                    "group-1")


def test_a_serializer_but_json_and_unknown_call_options_are_refused(
        define: Callable[..., Any]) -> None:
    task = define(name="unit.options.refused")(lambda: 1)
    with pytest.raises(TypeError, match="only 'json'"):
        task.apply_async((), serializer="pickle")
    with pytest.raises(TypeError, match="not a call option"):
        task.apply_async((), countdwn=3)


def test_async_result_of_a_task(define: Callable[..., Any]) -> None:
    task = define(name="unit.options.res")(lambda: 1)
    result = task.AsyncResult("some-id")
    assert isinstance(result, AsyncResult) and result.id == "some-id"


@pytest.mark.django_db(transaction=True)
def test_delay_on_commit_queues_after_the_commit(define: Callable[..., Any]) -> None:
    from django.db import transaction

    task = define(name="unit.options.later")(lambda x: x)
    with transaction.atomic():
        assert task.delay_on_commit(1) is None
        with pytest.raises(TypeError):
            task.delay_on_commit(1, 2)  # checked now, in the caller
        assert get_broker().depths(["default"]) == {"default": 0}
    assert get_broker().depths(["default"]) == {"default": 1}
