"""Settings are kept once read, and read again when a ``TASKS_*`` setting changes."""

from __future__ import annotations

from typing import Any

from django.conf import settings as django_settings
from django.test import override_settings

from django_tasks.conf import task_settings


def test_a_changed_setting_is_read_again(settings: Any) -> None:
    assert task_settings.DEFAULT_QUEUE == "default"
    with override_settings(TASKS_DEFAULT_QUEUE="first"):
        assert task_settings.DEFAULT_QUEUE == "first"
    assert task_settings.DEFAULT_QUEUE == "default"
    settings.TASKS_DEFAULT_QUEUE = "second"  # pytest-django's fixture
    assert task_settings.DEFAULT_QUEUE == "second"
    del settings.TASKS_DEFAULT_QUEUE
    assert task_settings.DEFAULT_QUEUE == "default"


def test_a_setting_is_read_from_django_once(monkeypatch: Any) -> None:
    """Read per message (the default queue, routes, sensitive tasks): a missing setting
    costs Django an exception on every read, so the value is kept."""
    reads: list[str] = []
    real = type(django_settings).__getattr__

    def counting(self: Any, name: str) -> Any:
        reads.append(name)
        return real(self, name)

    with override_settings(TASKS_SENSITIVE_TASKS=["a.*"]):
        monkeypatch.setattr(type(django_settings), "__getattr__", counting)
        for _ in range(3):
            assert task_settings.SENSITIVE_TASKS == ["a.*"]
            assert task_settings.TASK_ROUTES is None
        assert reads.count("TASKS_SENSITIVE_TASKS") <= 1
        assert reads.count("TASKS_TASK_ROUTES") <= 1
