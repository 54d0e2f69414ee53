"""Loggers for task code: ``logger = get_task_logger(__name__)``, as in Celery.

Each record logged through such a logger carries ``task_name`` and ``task_id``, read from the
task running in the calling thread or coroutine (``"???"`` outside a task), so a format can
show them: :data:`TASK_FORMAT` is Celery's worker task format, and the worker's own handler
(the one ``taskworker`` adds when the project configures no logging) uses it for these
records. As in Celery, the logger's parent is ``django_tasks.task``: its records go wherever
django_tasks' logs go, at the worker's ``--loglevel``.
"""

from __future__ import annotations

import contextvars
import logging
from typing import Any

from .. import request as request_module

#: The parent of every task logger.
TASK_LOGGER = "django_tasks.task"
#: Celery's ``worker_log_format`` and ``worker_task_log_format``.
FORMAT = "[%(asctime)s: %(levelname)s/%(processName)s] %(message)s"
TASK_FORMAT = ("[%(asctime)s: %(levelname)s/%(processName)s] "
               "%(task_name)s[%(task_id)s]: %(message)s")
#: What ``task_name`` and ``task_id`` hold outside a task (Celery's placeholder).
UNKNOWN = "???"
_RESERVED = {"django_tasks", TASK_LOGGER}
# The name prefix of the context variables ``Task`` keeps its running requests in
# (``Task._requests`` in task.py: one per task, a tuple of requests, innermost last).
_REQUESTS_VAR = "django_tasks.request:"


def current_request() -> Any:
    """The request of the task running in this context (thread or coroutine), or None.

    A request that came with a message (it has an id) wins over a plain function call of
    another task made from inside it."""
    running = request_module.current_request()
    if running is not None:
        return running
    found = None  # a task called as a function: its request has no id
    for var, stack in contextvars.copy_context().items():
        if stack and var.name.startswith(_REQUESTS_VAR):
            request = stack[-1]
            if getattr(request, "id", None):
                return request
            found = request
    return found


class TaskFilter(logging.Filter):
    """Sets ``record.task_name`` and ``record.task_id`` from the running task. Attached to
    task loggers; it runs where the record is made, so it sees that context's task."""

    def filter(self, record: logging.LogRecord) -> bool:
        annotate(record)
        return True


def annotate(record: logging.LogRecord) -> None:
    if hasattr(record, "task_id"):
        return
    request = current_request()
    record.task_name = getattr(request, "task", None) or UNKNOWN
    record.task_id = getattr(request, "id", None) or UNKNOWN


class TaskFormatter(logging.Formatter):
    """A formatter whose format may use ``%(task_name)s`` and ``%(task_id)s`` for any record
    (for ``LOGGING``: ``{"()": "django_tasks.utils.log.TaskFormatter", "format": ...}``);
    :data:`TASK_FORMAT` by default."""

    def __init__(self, fmt: str | None = None, *args: Any, **kwargs: Any) -> None:
        super().__init__(fmt or TASK_FORMAT, *args, **kwargs)

    def format(self, record: logging.LogRecord) -> str:
        annotate(record)
        return super().format(record)


class WorkerFormatter(logging.Formatter):
    """The worker's default: :data:`TASK_FORMAT` for records of task loggers (they carry a
    task id), :data:`FORMAT` for the rest."""

    def __init__(self) -> None:
        super().__init__(FORMAT)
        self._task = logging.Formatter(TASK_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        if getattr(record, "task_id", UNKNOWN) != UNKNOWN:
            return self._task.format(record)
        return super().format(record)


_filter = TaskFilter()


def get_task_logger(name: str) -> logging.Logger:
    """The logger ``name`` (usually ``__name__``), made a task logger: its records carry the
    running task's name and id, and go where django_tasks' records go."""
    if name in _RESERVED:
        raise ValueError(f"Logger name {name!r} is django_tasks' own: pass your module's "
                         "name, get_task_logger(__name__).")
    logger = logging.getLogger(name)
    logger.parent = logging.getLogger(TASK_LOGGER)
    if _filter not in logger.filters:
        logger.addFilter(_filter)
    return logger
