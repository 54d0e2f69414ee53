"""Rows for the app tests, with sensible defaults."""

from __future__ import annotations

import datetime as dt
import json

from django_tasks import states
from django_tasks.models import QueuedMessage, TaskResult, WorkerState


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def make_result(task_id: str, state: str = states.SUCCESS, done_ago: float | None = 0,
                runtime: float = 1.5, **extra: object) -> TaskResult:
    """A result finished ``done_ago`` seconds ago (None: not finished) after ``runtime`` s."""
    done = None if done_ago is None else now() - dt.timedelta(seconds=done_ago)
    fields: dict[str, object] = {
        "task_id": task_id, "task_name": "demo.add", "state": state, "args": "[1, 2]",
        "kwargs": "{}", "result": "3" if state == states.SUCCESS else None,
        "queue": "default", "worker": "w1@host",
        "created_at": (done or now()) - dt.timedelta(seconds=runtime + 0.25),
        "started_at": done and done - dt.timedelta(seconds=runtime), "date_done": done,
    }
    fields.update(extra)
    return TaskResult.objects.create(**fields)


def make_failure(task_id: str, **extra: object) -> TaskResult:
    fields: dict[str, object] = {
        "task_name": "demo.fail",
        "result": json.dumps({"exc_type": "ValueError", "exc_module": "builtins",
                              "exc_message": "boom <3", "exc_args": ["boom <3"]}),
        "traceback": ('Traceback (most recent call last):\n  File "demo/tasks.py", line 9, '
                      'in fail\n    raise ValueError("boom <3")\nValueError: boom <3\n'),
    }
    fields.update(extra)
    return make_result(task_id, states.FAILURE, **fields)


def make_message(task_id: str, task: str = "demo.add", *, delay: float = 0,
                 lease_owner: str | None = None, queue: str = "default",
                 body: str | None = None) -> QueuedMessage:
    envelope = {"headers": {"task": task, "id": task_id}, "properties": {},
                "body": [[1, 2], {}, {}]}
    return QueuedMessage.objects.create(
        queue=queue, task_id=task_id, body=body if body is not None else json.dumps(envelope),
        visible_at=now() + dt.timedelta(seconds=delay), lease_owner=lease_owner,
        deliveries=1 if lease_owner else 0, created_at=now())


def make_worker(hostname: str, beat_ago: float = 0, queues: str = "default") -> WorkerState:
    beat = now() - dt.timedelta(seconds=beat_ago)
    return WorkerState.objects.create(hostname=hostname, pid=4242, pool="prefork",
                                      concurrency=2, queues=queues,
                                      started_at=beat - dt.timedelta(hours=1),
                                      last_heartbeat=beat)


# -- periodic tasks ---------------------------------------------------------------------------
# (imported here so that this section stays one block added at the end of the file)

from django_tasks.models import (  # noqa: E402
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
)

ADD_TASK = "testproject.demo.tasks.add"


def make_interval(every: int = 15, period: str = "minutes") -> IntervalSchedule:
    return IntervalSchedule.objects.get_or_create(every=every, period=period)[0]


def make_crontab(**fields: str) -> CrontabSchedule:
    return CrontabSchedule.objects.create(**fields)


def make_periodic_task(name: str, task: str = ADD_TASK, *,
                       schedule: IntervalSchedule | CrontabSchedule | ClockedSchedule | None
                       = None, **extra: object) -> PeriodicTask:
    """A periodic task adding 1 and 2, every 15 minutes unless ``schedule`` says otherwise."""
    plan = schedule if schedule is not None else make_interval()
    fields: dict[str, object] = {"name": name, "task": task, "args": "[1, 2]",
                                 plan.periodic_field: plan}
    fields.update(extra)
    return PeriodicTask.objects.create(**fields)
