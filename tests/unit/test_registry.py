"""The task registry: names are unique, lookups of unknown names say what is known."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from django_tasks.exceptions import ConfigurationError, DuplicateTaskName, NotRegistered
from django_tasks.registry import TaskRegistry, registry
from django_tasks.task import Task

NAME = "unit.registry.dup"


def first() -> int:
    return 1


def second() -> int:
    return 2


def test_register_and_get() -> None:
    tasks = TaskRegistry()
    task: Task[[], int] = Task(first, name="a.first")
    tasks.register(task)
    assert tasks.get("a.first") is task
    assert "a.first" in tasks
    assert len(tasks) == 1


def test_iteration_is_sorted_by_name() -> None:
    tasks = TaskRegistry()
    tasks.register(Task(second, name="b"))
    tasks.register(Task(first, name="a"))
    assert list(tasks) == ["a", "b"]


def test_duplicate_name_from_another_function_names_both_locations() -> None:
    tasks = TaskRegistry()
    tasks.register(Task(first, name=NAME))
    with pytest.raises(DuplicateTaskName) as info:
        tasks.register(Task(second, name=NAME))
    message = str(info.value)
    assert repr(NAME) in message
    assert f"{__name__}.first ({__file__}:" in message
    assert f"{__name__}.second ({__file__}:" in message
    assert "@shared_task(name=...)" in message
    assert tasks.get(NAME).fn is first  # the first one stays


def test_duplicate_name_is_a_configuration_error() -> None:
    assert issubclass(DuplicateTaskName, ConfigurationError)
    assert issubclass(DuplicateTaskName, ImproperlyConfigured)


def test_registering_the_same_function_again_is_fine() -> None:
    tasks = TaskRegistry()
    tasks.register(Task(first, name=NAME))
    again: Task[[], int] = Task(first, name=NAME)  # a module imported twice (e.g. under two paths)
    tasks.register(again)
    assert tasks.get(NAME) is again
    assert len(tasks) == 1


def test_not_registered_lists_known_tasks() -> None:
    tasks = TaskRegistry()
    tasks.register(Task(second, name="b.second"))
    tasks.register(Task(first, name="a.first"))
    with pytest.raises(NotRegistered) as info:
        tasks.get("c.missing")
    message = str(info.value)
    assert "'c.missing' is not registered" in message
    assert "Known tasks: a.first, b.second." in message
    assert "tasks.py" in message


def test_not_registered_in_an_empty_registry_says_none() -> None:
    with pytest.raises(NotRegistered, match="Known tasks: none"):
        TaskRegistry().get("x")


def test_not_registered_is_a_key_error_with_a_readable_message() -> None:
    with pytest.raises(KeyError) as info:
        TaskRegistry().get("x")
    assert str(info.value).startswith("Task 'x' is not registered")  # no KeyError quoting


def test_unregister() -> None:
    tasks = TaskRegistry()
    tasks.register(Task(first, name="a"))
    tasks.unregister("a")
    assert "a" not in tasks
    with pytest.raises(NotRegistered):
        tasks.get("a")
    tasks.unregister("a")  # unknown names are ignored


def test_after_unregister_another_function_may_take_the_name() -> None:
    tasks = TaskRegistry()
    tasks.register(Task(first, name=NAME))
    tasks.unregister(NAME)
    tasks.register(Task(second, name=NAME))
    assert tasks.get(NAME).fn is second


# -- the global registry, through @shared_task ---------------------------------------------


def test_shared_task_registers_globally(define: Callable[..., Any]) -> None:
    task = define(first, name="unit.registry.global")
    assert registry.get("unit.registry.global") is task


def test_shared_task_with_a_taken_name_raises_and_keeps_the_first(
    define: Callable[..., Any],
) -> None:
    original = define(first, name="unit.registry.taken")
    with pytest.raises(DuplicateTaskName, match=r"defined twice"):
        define(second, name="unit.registry.taken")
    assert registry.get("unit.registry.taken") is original


def test_shared_task_twice_on_one_function_is_fine(define: Callable[..., Any]) -> None:
    define(first, name="unit.registry.twice")
    again = define(first, name="unit.registry.twice")
    assert registry.get("unit.registry.twice") is again


def test_the_demo_tasks_are_autodiscovered() -> None:
    assert "testproject.demo.tasks.add" in registry
    assert "testproject.demo.tasks.add" in list(registry)


def test_define_fixture_cleans_up() -> None:
    # Runs after the tests above: nothing they registered is left behind.
    assert not [name for name in registry if name.startswith("unit.registry.")]
