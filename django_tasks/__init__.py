"""django_tasks: Celery-grade background tasks for Django.

Only the public API lives here; everything else is private. Names are imported on first use,
so that ``import django_tasks`` alone (as the health probe does) does not import Django.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .canvas import Signature, chain, chord, group, signature
    from .exceptions import (
        ChordError,
        MaxRetriesExceededError,
        NotRegistered,
        ResultBackendDisabled,
        Retry,
        SoftTimeLimitExceeded,
        TaskError,
        TaskRevokedError,
        TimeLimitExceeded,
        TimeoutError,
    )
    from .group_result import GroupResult
    from .result import AsyncResult, EagerResult
    from .states import FAILURE, PENDING, RETRY, REVOKED, STARTED, SUCCESS, TaskState
    from .task import Request, Task, send_task, shared_task

_WHERE = {
    **dict.fromkeys(["Signature", "chain", "chord", "group", "signature"], ".canvas"),
    "GroupResult": ".group_result",
    **dict.fromkeys(["ChordError", "MaxRetriesExceededError", "NotRegistered",
                     "ResultBackendDisabled", "Retry", "SoftTimeLimitExceeded", "TaskError",
                     "TaskRevokedError",
                     "TimeLimitExceeded", "TimeoutError"], ".exceptions"),
    **dict.fromkeys(["AsyncResult", "EagerResult"], ".result"),
    **dict.fromkeys(["FAILURE", "PENDING", "RETRY", "REVOKED", "STARTED", "SUCCESS",
                     "TaskState"], ".states"),
    **dict.fromkeys(["Request", "Task", "send_task", "shared_task"], ".task"),
}

__all__ = [
    "FAILURE",
    "PENDING",
    "RETRY",
    "REVOKED",
    "STARTED",
    "SUCCESS",
    "AsyncResult",
    "ChordError",
    "EagerResult",
    "GroupResult",
    "MaxRetriesExceededError",
    "NotRegistered",
    "Request",
    "ResultBackendDisabled",
    "Retry",
    "Signature",
    "SoftTimeLimitExceeded",
    "Task",
    "TaskError",
    "TaskRevokedError",
    "TaskState",
    "TimeLimitExceeded",
    "TimeoutError",
    "chain",
    "chord",
    "group",
    "send_task",
    "shared_task",
    "signature",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'django_tasks' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
