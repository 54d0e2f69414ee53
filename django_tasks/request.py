"""``Request``: what a bound task sees as ``self.request`` while it runs."""

from __future__ import annotations

import contextvars
import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .message import Message


@dataclass
class Request:
    """What a bound task sees as ``self.request`` while it runs."""

    id: str | None = None
    task: str | None = None
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    retries: int = 0
    eta: dt.datetime | None = None
    expires: dt.datetime | None = None
    root_id: str | None = None
    parent_id: str | None = None
    group: str | None = None
    hostname: str | None = None
    delivery_info: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, Any] = field(default_factory=dict)
    is_eager: bool = False
    called_directly: bool = True

    @classmethod
    def from_message(cls, message: Message, *, hostname: str | None = None,
                     attempts: int = 1, is_eager: bool = False) -> Request:
        return cls(
            id=message.id, task=message.task, args=message.args, kwargs=message.kwargs,
            retries=message.retries, eta=message.eta, expires=message.expires,
            root_id=message.root_id, parent_id=message.parent_id, group=message.group,
            hostname=hostname, headers=message.headers, is_eager=is_eager,
            called_directly=False,
            delivery_info={"queue": message.queue, "routing_key": message.queue,
                           "priority": message.priority, "attempts": attempts},
        )


#: The request of the task running in this context (thread or coroutine), innermost: set
#: while a task runs under a message, not for a plain function call of a task.
_current: contextvars.ContextVar[Request | None] = contextvars.ContextVar(
    "django_tasks.current_request", default=None)


def current_request() -> Request | None:
    """The request of the task running here under a message (worker, ``apply()``, eager
    mode), or None: what gives a task queued from inside it its ``parent_id`` and
    ``root_id``, and the task logger its name and id."""
    return _current.get()
