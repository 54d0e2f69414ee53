"""``async def`` tasks: run to completion by the worker's code, limits enforced by the loop,
the async ORM on the worker thread's connection, and ``adelay()``/``aget()`` for async code."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import override_settings

from django_tasks import AsyncResult, shared_task, states
from django_tasks.message import Message
from django_tasks.task import build_message, run_message
from django_tasks.testing import TaskQueue

cleaned: list[str] = []


@shared_task(name="unit.aio.add")
async def add(x: int, y: int) -> int:
    await asyncio.sleep(0)
    return x + y


@shared_task(name="unit.aio.who", bind=True)
async def who(self: Any) -> dict[str, Any]:  # type: ignore[misc]
    await asyncio.sleep(0)
    return {"id": self.request.id, "retries": self.request.retries}


@shared_task(name="unit.aio.sleepy")
async def sleepy(seconds: float, tidy: bool = False) -> str:
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        cleaned.append("cancelled")
        if tidy:
            return "stopped early"
        raise
    return "slept"


@shared_task(name="unit.aio.flaky", bind=True)
async def flaky(self: Any) -> int:  # type: ignore[misc]
    if self.request.retries == 0:
        raise self.retry(countdown=30)
    return self.request.retries


@shared_task(name="unit.aio.users")
async def users() -> int:
    return await User.objects.acount()


@pytest.fixture(autouse=True)
def _clean() -> None:
    cleaned.clear()


def run(task: Any, *args: Any, limits: tuple[float | None, float | None] = (None, None),
        **kwargs: Any) -> Any:
    message = Message.decode(build_message(task.name, args, kwargs).encode())
    outcome, _ = run_message(task, message, worker="unit", limits=limits)
    return outcome


def test_an_async_task_runs_to_its_value() -> None:
    assert add.is_async
    outcome = run(add, 2, 3)
    assert (outcome.state, outcome.result) == (states.SUCCESS, 5)


def test_a_bound_async_task_sees_its_request() -> None:
    outcome = run(who)
    assert outcome.result == {"id": outcome.task_id, "retries": 0}


def test_calling_an_async_task_gives_its_coroutine() -> None:
    assert asyncio.run(add(1, 2)) == 3


def test_the_soft_limit_cancels_and_fails() -> None:
    outcome = run(sleepy, 5, limits=(0.1, None))
    assert outcome.state == states.FAILURE
    assert outcome.result["exc_type"] == "SoftTimeLimitExceeded"
    assert cleaned == ["cancelled"]


def test_a_task_may_clean_up_and_return_at_the_soft_limit() -> None:
    outcome = run(sleepy, 5, tidy=True, limits=(0.1, 1.0))
    assert (outcome.state, outcome.result) == (states.SUCCESS, "stopped early")


def test_the_hard_limit_cancels_and_fails() -> None:
    outcome = run(sleepy, 5, limits=(None, 0.1))
    assert outcome.result["exc_type"] == "TimeLimitExceeded"
    assert "hard time limit of 0.1s" in outcome.result["exc_message"]


@pytest.mark.usefixtures("memory_tasks")
def test_inside_a_running_loop_it_says_to_await_adelay() -> None:
    async def view() -> None:
        add.apply((1, 2))

    with pytest.raises(RuntimeError, match=r"await task\.adelay"):
        asyncio.run(view())


def test_retries_and_the_async_orm_work_under_the_task_queue(task_queue: TaskQueue) -> None:
    User.objects.create_user("ada")  # in the test's transaction: the task must see it
    counted, retried = users.delay(), flaky.delay()
    task_queue.run_pending()
    assert counted.get(timeout=0) == 1
    assert retried.state == states.RETRY
    task_queue.clock.advance(30)
    task_queue.run_pending()
    assert retried.get(timeout=0) == 1


@override_settings(TASKS_BROKER_URL="memory://", TASKS_RESULT_BACKEND="memory://",
                   TASKS_ALWAYS_EAGER=True)
def test_adelay_and_aget_from_async_code() -> None:
    from django_tasks.conf import reset_cache

    reset_cache()

    async def view() -> tuple[Any, Any]:
        result = await add.adelay(20, 22)
        return await AsyncResult(result.id).aget(timeout=5), await result.aget(timeout=5)

    try:
        assert asyncio.run(view()) == (42, 42)
    finally:
        reset_cache()


@override_settings(TASKS_BROKER_URL="memory://", TASKS_RESULT_BACKEND="memory://")
def test_aget_waits_without_blocking_the_loop() -> None:
    from django_tasks.conf import get_result_store, reset_cache
    from django_tasks.exceptions import TimeoutError as TaskTimeoutError

    reset_cache()
    message = build_message("unit.aio.add", (1, 1), {})
    get_result_store().create_pending([message])

    async def view() -> list[str]:
        ticks: list[str] = []

        async def tick() -> None:
            for _ in range(3):
                ticks.append("tick")
                await asyncio.sleep(0.01)

        ticker = asyncio.create_task(tick())
        with pytest.raises(TaskTimeoutError):
            await AsyncResult(message.id).aget(timeout=0.2, interval=0.05)
        await ticker
        return ticks

    try:
        assert asyncio.run(view()) == ["tick"] * 3
    finally:
        reset_cache()
