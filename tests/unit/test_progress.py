"""``update_state()``: a task's own states, written at once and read through ``AsyncResult``,
on the memory store (through the worker's consumer) and on the database store."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.test import override_settings

from django_tasks import AsyncResult, states
from django_tasks.conf import get_broker, get_result_store, reset_cache
from django_tasks.message import Message
from django_tasks.result import TaskOutcome
from django_tasks.task import build_message
from django_tasks.worker.consumer import Consumer

seen: list[tuple[str, Any]] = []


def consumer() -> Consumer:
    return Consumer(queues=["default"], owner="test/1", hostname="test@host", prefetch=16,
                    lease=30, stop=threading.Event())


def send(message: Message) -> str:
    store = get_result_store()
    assert store is not None
    store.create_pending([message])
    get_broker().publish([message])
    return message.id


def drain() -> None:
    c = consumer()
    c.process(get_broker().fetch(["default"], c.owner, 16, 30))


@pytest.fixture(autouse=True)
def _memory(memory_tasks: None) -> None:
    seen.clear()


def test_progress_is_stored_at_once_and_read_through_info(define: Callable[..., Any]) -> None:
    @define(name="unit.progress.count", bind=True)
    def count(self: Any, total: int) -> str:
        for done in range(1, total + 1):
            assert self.update_state(state="PROGRESS", meta={"current": done, "total": total})
            result = AsyncResult(self.request.id)  # read back while the task runs
            seen.append((result.state, result.info))
        return "done"

    task_id = send(build_message(count.name, (3,), {}))
    drain()
    assert seen == [("PROGRESS", {"current": n, "total": 3}) for n in (1, 2, 3)]
    result = AsyncResult(task_id)
    assert (result.state, result.info, result.result) == (states.SUCCESS, "done", "done")


def test_progress_does_not_replace_a_final_state(define: Callable[..., Any]) -> None:
    @define(name="unit.progress.late")
    def late() -> None:
        pass

    store = get_result_store()
    message = build_message(late.name, (), {})
    store.create_pending([message])
    store.store_outcomes([TaskOutcome(task_id=message.id, task_name=late.name,
                                      state=states.SUCCESS, result=1)])
    assert late.update_state(task_id=message.id, state="PROGRESS", meta={"current": 1}) is False
    assert AsyncResult(message.id).state == states.SUCCESS


def test_update_state_by_id_from_outside_the_task(define: Callable[..., Any]) -> None:
    @define(name="unit.progress.outside")
    def outside() -> None:
        pass

    message = build_message(outside.name, (), {})
    get_result_store().create_pending([message])
    assert outside.update_state(task_id=message.id, state="UPLOADING", meta=["a", 1])
    result = AsyncResult(message.id)
    assert (result.state, result.info) == ("UPLOADING", ["a", 1])
    assert not result.ready()


def test_a_task_without_a_row_or_an_id_has_nothing_to_update(define: Callable[..., Any]) -> None:
    @define(name="unit.progress.quiet", bind=True, ignore_result=True)
    def quiet(self: Any) -> None:
        seen.append(("stored", self.update_state(state="PROGRESS", meta={"current": 1})))

    quiet()  # called directly: no id
    get_broker().publish([build_message(quiet.name, (), {}, ignore_result=True)])
    drain()
    assert seen == [("stored", False), ("stored", False)]


@pytest.mark.parametrize("state", [None, "", "X" * 17, "TAB\tBED", 7])
def test_a_bad_state_name_is_a_clear_error(define: Callable[..., Any], state: Any) -> None:
    @define(name="unit.progress.bad")
    def bad() -> None:
        pass

    with pytest.raises(ValueError, match="state is a name of 1 to 16 printable characters"):
        bad.update_state(task_id="x", state=state)


def test_meta_that_json_cannot_carry_is_an_encode_error(define: Callable[..., Any]) -> None:
    from django_tasks.exceptions import EncodeError

    @define(name="unit.progress.object")
    def obj() -> None:
        pass

    with pytest.raises(EncodeError, match="meta of state PROGRESS"):
        obj.update_state(task_id="x", state="PROGRESS", meta={"x": object()})


def test_eager_mode_runs_update_state_as_a_no_op(define: Callable[..., Any],
                                                 eager: None) -> None:
    @define(name="unit.progress.eager", bind=True)
    def step(self: Any) -> int:
        seen.append(("stored", self.update_state(state="PROGRESS", meta={"current": 1})))
        return 1

    result = step.delay()
    assert (result.state, result.info) == (states.SUCCESS, 1)
    assert seen == [("stored", False)]


def test_an_async_task_updates_its_state_both_ways(define: Callable[..., Any]) -> None:
    @define(name="unit.progress.coroutine", bind=True)
    async def crawl(self: Any) -> str:
        assert self.update_state(state="PROGRESS", meta={"current": 1, "total": 2})
        seen.append(("sync", AsyncResult(self.request.id).info))
        assert await self.aupdate_state(state="PROGRESS", meta={"current": 2, "total": 2})
        return "crawled"

    task_id = send(build_message(crawl.name, (), {}))
    drain()
    assert seen == [("sync", {"current": 1, "total": 2})]
    assert AsyncResult(task_id).info == "crawled"


@pytest.mark.django_db(transaction=True)
def test_the_database_store_writes_progress_at_once(define: Callable[..., Any]) -> None:
    @define(name="unit.progress.database", bind=True)
    def step(self: Any) -> None:
        self.update_state(state="PROGRESS", meta={"current": 5, "total": 10})
        row = TaskResult.objects.get(task_id=self.request.id)
        seen.append((row.state, row.result, row.worker))

    from django_tasks.models import TaskResult

    with override_settings(TASKS_RESULT_BACKEND="django://"):
        reset_cache()
        task_id = send(build_message(step.name, (), {}))
        drain()
        assert seen == [("PROGRESS", '{"current":5,"total":10}', "test@host")]
        assert AsyncResult(task_id).state == states.SUCCESS
        assert step.update_state(task_id=task_id, state="PROGRESS", meta=1) is False
        assert TaskResult.objects.get(task_id=task_id).state == states.SUCCESS
