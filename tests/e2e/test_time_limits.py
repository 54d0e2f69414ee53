"""End-to-end time limits in every pool: the hard limit ends a task as FAILURE and the worker
goes on; the soft limit lets a task clean up; a thread that cannot be stopped makes the
worker exit for its supervisor to restart. Run on SQLite only: the limits do not depend on
the database."""

from __future__ import annotations

import json
import time

import pytest

from .conftest import Project

pytestmark = [pytest.mark.e2e,
              pytest.mark.parametrize("backend", ["sqlite"], indirect=True)]


def apply(project: Project, task: str, kwargs: dict[str, object], **options: object) -> str:
    return project.shell(
        f"from testproject.demo.tasks import {task}\n"
        f"print({task}.apply_async(kwargs={kwargs!r}, **{options!r}).id)").strip()


def reason(project: Project, task_id: str) -> dict[str, str]:
    result = project.result(task_id)
    assert result is not None
    return json.loads(result["result"])  # type: ignore[no-any-return]


@pytest.mark.parametrize("pool", ["prefork", "threads", "solo"])
def test_the_hard_limit_ends_a_busy_task_and_the_worker_goes_on(project: Project,
                                                                pool: str) -> None:
    worker = project.worker("-c", "1", "-P", pool)
    project.wait_ready(worker)
    started = time.monotonic()
    task_id = apply(project, "crunch", {"seconds": 60}, time_limit=2)
    project.wait_state(task_id, "FAILURE", timeout=30)
    assert time.monotonic() - started < 20  # not the task's 60 s
    failure = reason(project, task_id)
    assert failure["exc_type"] == "TimeLimitExceeded"
    assert "hard time limit of 2s" in failure["exc_message"]
    after = project.delay("add", 20, 22)
    project.wait_state(after, "SUCCESS")
    assert worker.running()
    assert project.count("django_tasks_queuedmessage") == 0


@pytest.mark.parametrize("pool", ["prefork", "solo"])
def test_the_soft_limit_lets_a_task_clean_up(project: Project, pool: str) -> None:
    worker = project.worker("-c", "1", "-P", pool)
    task_id = apply(project, "tidy", {"seconds": 60}, soft_time_limit=1)
    project.wait_state(task_id, "SUCCESS", timeout=30)
    result = project.result(task_id)
    assert result is not None
    assert json.loads(result["result"]) == "stopped at the soft time limit"
    assert worker.running()


def test_a_thread_that_cannot_be_stopped_makes_the_worker_exit(project: Project) -> None:
    # A thread blocked in time.sleep() never sees the exception raised in it.
    worker = project.worker("-c", "2", "-P", "threads")
    project.wait_ready(worker)
    task_id = apply(project, "slow", {"seconds": 60}, time_limit=1)
    assert worker.wait_exit(30) == 3
    failure = reason(project, task_id)
    assert failure["exc_type"] == "TimeLimitExceeded"
    assert "exits with status 3" in failure["exc_message"]
    assert project.count("django_tasks_queuedmessage") == 0
    assert project.count("django_tasks_workerstate") == 0


@pytest.mark.parametrize("pool", ["prefork", "threads", "solo"])
def test_an_async_task_runs_and_its_hard_limit_cancels_it(project: Project, pool: str) -> None:
    worker = project.worker("-c", "1", "-P", pool)
    quick = apply(project, "nap", {"seconds": 0.1})
    project.wait_state(quick, "SUCCESS", timeout=30)
    result = project.result(quick)
    assert result is not None and json.loads(result["result"]) == "napped 0.1s"
    stuck = apply(project, "nap", {"seconds": 60}, time_limit=1)
    project.wait_state(stuck, "FAILURE", timeout=30)
    assert reason(project, stuck)["exc_type"] == "TimeLimitExceeded"
    project.wait_state(project.delay("add", 1, 1), "SUCCESS")
    assert worker.running()  # even the threads pool: a coroutine can be cancelled
