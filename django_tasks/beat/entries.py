"""Turning a due ``PeriodicTask`` row into the message the beat queues."""

from __future__ import annotations

import datetime as dt

from ..message import Message, printable
from ..models import PeriodicTask
from ..registry import registry
from ..task import build_message


class EntryError(ValueError):
    """A periodic task the beat cannot queue as it stands; the message says what to fix."""


def message_for(row: PeriodicTask, due: dt.datetime, now: dt.datetime) -> Message:
    """The message that runs ``row`` for its slot ``due``; :class:`EntryError` if the row
    names no registered task, holds bad arguments or options."""
    name = printable(row.name)
    if row.task not in registry:
        raise EntryError(f"periodic task {name!r}: task {printable(row.task)!r} is not "
                         "registered in this process; check the name (the known tasks are "
                         "listed in the admin's task field)")
    task = registry.get(row.task)
    try:
        args, kwargs = row.call_arguments()
        task.check_arguments(tuple(args), kwargs)
    except (TypeError, ValueError) as exc:
        raise EntryError(f"periodic task {name!r}: {exc}") from None
    expires: float | dt.datetime | None = row.expires
    if row.expire_seconds:
        expires = now + dt.timedelta(seconds=row.expire_seconds)
    headers = {"periodic_task_name": row.name, "periodic_task_due": due.isoformat()}
    try:
        return build_message(
            row.task, tuple(args), kwargs, queue=row.queue or task.queue,
            priority=task.priority if row.priority is None else row.priority,
            expires=expires, headers=headers, ignore_result=task.ignore_result)
    except (TypeError, ValueError) as exc:
        raise EntryError(f"periodic task {name!r}: {exc}") from None
