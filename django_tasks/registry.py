"""The name → task mapping every process keeps. Messages carry names, never code."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from .exceptions import DuplicateTaskName, NotRegistered

if TYPE_CHECKING:
    from .task import Task


class TaskRegistry:
    def __init__(self) -> None:
        self._tasks: dict[str, Task] = {}

    def register(self, task: Task) -> None:
        existing = self._tasks.get(task.name)
        if existing is not None and existing.location != task.location:
            raise DuplicateTaskName(
                f"Task name {task.name!r} is defined twice: in {existing.location} and in "
                f"{task.location}. Give one of them another name with "
                "@shared_task(name=...)."
            )
        self._tasks[task.name] = task

    def unregister(self, name: str) -> None:
        self._tasks.pop(name, None)

    def get(self, name: str) -> Task:
        try:
            return self._tasks[name]
        except KeyError:
            raise NotRegistered(
                f"Task {name!r} is not registered in this process. Known tasks: "
                f"{', '.join(sorted(self._tasks)) or 'none'}. Define it in the tasks.py of an "
                "installed app (or a module that file imports)."
            ) from None

    def find(self, name: str) -> Task | None:
        """The task called ``name``, or None when this process does not know it."""
        return self._tasks.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._tasks))

    def __len__(self) -> int:
        return len(self._tasks)


registry = TaskRegistry()


def autodiscover() -> None:
    """Import ``tasks.py`` of every installed app, so its tasks register themselves."""
    from django.utils.module_loading import autodiscover_modules

    autodiscover_modules("tasks")
