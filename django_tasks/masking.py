"""Arguments that must not be kept: tasks marked ``sensitive=True`` (or named by
``TASKS_SENSITIVE_TASKS``) have their arguments masked in every place django_tasks writes them
for people to read: the result row (so the admin, ``taskresult`` and the database never hold
them), and the message's ``argsrepr``/``kwargsrepr`` headers. The message itself carries the
real arguments: the worker needs them.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from typing import Any

from . import serialization
from .conf import task_settings
from .registry import registry

MASK = "********"


def is_sensitive(task_name: str) -> bool:
    """Whether the arguments of ``task_name`` are masked."""
    task = registry.find(task_name)
    if task is not None and task.sensitive:
        return True
    patterns = task_settings.SENSITIVE_TASKS
    return bool(patterns) and any(fnmatch.fnmatchcase(task_name, p) for p in patterns)


def shown(task_name: str, args: Sequence[Any],
          kwargs: Mapping[str, Any]) -> tuple[Sequence[Any], Mapping[str, Any]]:
    """The arguments as people may see them: one mask per value of a sensitive task (the
    count and the keyword names stay), else the very objects given."""
    if is_sensitive(task_name):
        return [MASK] * len(args), dict.fromkeys(kwargs, MASK)
    return args, kwargs


def stored(task_name: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> tuple[str, str]:
    """``args`` and ``kwargs`` as JSON text for a result row, masked where they must be."""
    shown_args, shown_kwargs = shown(task_name, args, kwargs)
    return (serialization.dumps(list(shown_args)) if shown_args else "[]",
            serialization.dumps(dict(shown_kwargs)) if shown_kwargs else "{}")
