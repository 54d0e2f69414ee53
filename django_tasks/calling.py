"""Building the message of one call, and queueing a task by name (``send_task``)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import TYPE_CHECKING, Any

from . import clock
from .conf import task_settings, time_limit_error
from .exceptions import EncodeError
from .message import Message, name_error, printable
from .options import call_options

if TYPE_CHECKING:
    from .result import AsyncResult

MAX_PRIORITY = 9


def utcnow() -> dt.datetime:
    return clock.now()


def _to_datetime(value: float | dt.timedelta | dt.datetime, now: dt.datetime) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, dt.timedelta):
        return now + value
    return now + dt.timedelta(seconds=float(value))


def build_message(
    name: str, args: tuple[Any, ...], kwargs: dict[str, Any], *,
    countdown: float | None = None, eta: dt.datetime | None = None,
    expires: float | dt.timedelta | dt.datetime | None = None, queue: str | None = None,
    priority: int | None = None, task_id: str | None = None,
    headers: dict[str, Any] | None = None, ignore_result: bool = False,
    time_limit: float | None = None, soft_time_limit: float | None = None,
    root_id: str | None = None, parent_id: str | None = None, group_id: str | None = None,
    **celery_options: Any,
) -> Message:
    """The message of one call. ``celery_options`` are Celery's other ``apply_async``
    options: accepted with a warning where they have no meaning here (``options.py``)."""
    if celery_options:
        call_options(celery_options)
    if countdown is not None and eta is not None:
        raise TypeError("Pass either countdown= or eta=, not both.")
    for option, value in (("time_limit", time_limit), ("soft_time_limit", soft_time_limit)):
        error = time_limit_error(value)
        if error:
            raise TypeError(f"{option} {error}.")
    if (queue is None or priority is None) and task_settings.TASK_ROUTES:
        from .routing import route_for

        route = route_for(name, args, kwargs, {"queue": queue, "priority": priority},
                          task_settings.TASK_ROUTES)
        queue = queue or route.queue
        priority = route.priority if priority is None else priority
    if priority is not None and not (
            isinstance(priority, int) and 0 <= priority <= MAX_PRIORITY):
        raise TypeError(f"priority must be an int from 0 to 9, not {priority!r}.")
    task_id = None if task_id is None or task_id == "" else str(task_id)
    for what, text in (("task name", name), ("task_id", task_id), ("queue", queue),
                       ("root_id", root_id), ("parent_id", parent_id),
                       ("group_id", group_id)):
        if text is not None and (problem := name_error(text, what)):
            raise EncodeError(f"Cannot queue {printable(str(name))}: {problem}.")
    now = utcnow()
    when = _to_datetime(countdown, now) if countdown is not None else eta
    if when is not None and when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    message = Message(
        id=str(task_id or uuid.uuid4()), task=name, args=args, kwargs=kwargs,
        queue=queue or str(task_settings.DEFAULT_QUEUE), priority=priority or 0,
        eta=when, expires=_to_datetime(expires, now) if expires is not None else None,
        headers=dict(headers or {}), ignore_result=ignore_result,
        timelimit=(None if time_limit is None else float(time_limit),
                   None if soft_time_limit is None else float(soft_time_limit)),
        root_id=root_id, parent_id=parent_id, group=group_id,
    )
    message.encode()  # fail here, in the caller, if the arguments are not serializable
    return message


def send_task(name: str, args: tuple[Any, ...] | list[Any] | None = None,
              kwargs: dict[str, Any] | None = None, **options: Any) -> AsyncResult:
    """Queue a task by name, without importing it (it is checked by the worker instead)."""
    from .registry import registry

    message = build_message(name, tuple(args or ()), dict(kwargs or {}), **options)
    if task_settings.ALWAYS_EAGER and name in registry:
        return registry.get(name)._apply_eager(message)
    from .publishing import publish

    return publish(message)
