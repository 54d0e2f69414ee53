"""django_tasks: Celery-grade background tasks for Django.

Only the public API lives here; everything else is private.
"""

from .exceptions import (
    MaxRetriesExceededError,
    NotRegistered,
    ResultBackendDisabled,
    Retry,
    TaskError,
    TaskRevokedError,
    TimeoutError,
)
from .result import AsyncResult, EagerResult
from .states import FAILURE, PENDING, RETRY, REVOKED, STARTED, SUCCESS, TaskState
from .task import Request, Task, send_task, shared_task

__all__ = [
    "FAILURE",
    "PENDING",
    "RETRY",
    "REVOKED",
    "STARTED",
    "SUCCESS",
    "AsyncResult",
    "EagerResult",
    "MaxRetriesExceededError",
    "NotRegistered",
    "Request",
    "ResultBackendDisabled",
    "Retry",
    "Task",
    "TaskError",
    "TaskRevokedError",
    "TaskState",
    "TimeoutError",
    "send_task",
    "shared_task",
]
