"""Sensitive tasks: their arguments are never written where people read them."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client, override_settings
from django.urls import reverse

from django_tasks import shared_task
from django_tasks.conf import get_broker, reset_cache
from django_tasks.masking import MASK
from django_tasks.message import Message
from django_tasks.models import QueuedMessage, TaskResult
from django_tasks.worker.consumer import Consumer

pytestmark = pytest.mark.django_db
received: list[tuple[Any, ...]] = []


@shared_task(name="unit.masking.login", sensitive=True)
def login(user: str, password: str, otp: str = "") -> str:
    received.append((user, password, otp))
    return "ok"


@shared_task(name="unit.masking.report")
def report(day: str) -> str:
    received.append((day,))
    return day


@pytest.fixture(autouse=True)
def database_tasks() -> Iterator[None]:
    received.clear()
    with override_settings(TASKS_BROKER_URL="django://", TASKS_RESULT_BACKEND="django://",
                           TASKS_ALWAYS_EAGER=False):
        reset_cache()
        yield
    reset_cache()


def drain() -> None:
    consumer = Consumer(queues=["default"], owner="t/1", hostname="t@h", prefetch=8,
                        lease=30, stop=threading.Event())
    while QueuedMessage.objects.exists():
        consumer.process(get_broker().fetch(["default"], "t/1", 8, 30))


def test_a_sensitive_task_runs_with_its_arguments_and_stores_masks() -> None:
    result = login.delay("ann", "hunter2", otp="123456")
    row = TaskResult.objects.get(task_id=result.id)
    assert (json.loads(row.args), json.loads(row.kwargs)) == ([MASK, MASK], {"otp": MASK})
    [body] = QueuedMessage.objects.values_list("body", flat=True)
    headers = json.loads(body)["headers"]
    assert "hunter2" not in headers["argsrepr"] and "123456" not in headers["kwargsrepr"]
    assert Message.decode(body).args == ("ann", "hunter2")  # the worker still gets them
    drain()
    assert received == [("ann", "hunter2", "123456")]
    row.refresh_from_db()
    assert row.state == "SUCCESS" and "hunter2" not in row.args + row.kwargs


def test_a_setting_marks_tasks_sensitive_by_name(settings: Any) -> None:
    settings.TASKS_SENSITIVE_TASKS = ["unit.masking.rep*"]
    result = report.delay("2026-11-28")
    assert json.loads(TaskResult.objects.get(task_id=result.id).args) == [MASK]
    settings.TASKS_SENSITIVE_TASKS = []
    other = report.delay("2026-11-29")
    assert json.loads(TaskResult.objects.get(task_id=other.id).args) == ["2026-11-29"]


def test_without_pending_rows_the_worker_stores_masks_too(settings: Any) -> None:
    settings.TASKS_STORE_PENDING = False
    result = login.delay("ann", "hunter2")
    drain()
    row = TaskResult.objects.get(task_id=result.id)
    assert row.state == "SUCCESS" and json.loads(row.args) == [MASK, MASK]


def test_the_admin_shows_masks_and_will_not_queue_a_sensitive_task_again(
        admin_client: Client) -> None:
    result = login.delay("ann", "hunter2")
    drain()
    page = admin_client.get(reverse("admin:django_tasks_taskresult_change",
                                    args=[TaskResult.objects.get(task_id=result.id).pk]))
    assert page.status_code == 200 and "hunter2" not in page.content.decode()
    assert MASK in page.content.decode()
    response = admin_client.post(reverse("admin:django_tasks_taskresult_changelist"),
                                 {"action": "queue_again",
                                  "_selected_action": [TaskResult.objects.get().pk]},
                                 follow=True)
    assert "is a sensitive task" in response.content.decode()
    assert not QueuedMessage.objects.exists()


def test_the_queue_page_masks_a_queued_sensitive_message(admin_client: Client) -> None:
    login.delay("user-4711", "hunter2")
    page = admin_client.get(reverse("admin:django_tasks_queuedmessage_change",
                                    args=[QueuedMessage.objects.get().pk]))
    text = page.content.decode()
    assert page.status_code == 200 and "hunter2" not in text and "user-4711" not in text
    assert MASK in text
