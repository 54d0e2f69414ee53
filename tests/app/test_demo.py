"""The demo page queues example tasks and lists their results."""

from __future__ import annotations

import pytest
from django.core import mail
from django.test import TestCase

from django_tasks.models import TaskResult
from django_tasks.testing import TaskQueue

pytestmark = pytest.mark.django_db


def test_demo_page_queues_each_example(client) -> None:  # type: ignore[no-untyped-def]
    for kind in ("add", "email", "slow", "fail"):
        assert client.post("/", {"kind": kind}).status_code == 302
    names = set(TaskResult.objects.values_list("task_name", flat=True))
    assert names == {f"testproject.demo.tasks.{n}"
                     for n in ("add", "send_welcome_email", "slow", "fail")}
    page = client.get("/").content.decode()
    assert "testproject.demo.tasks.fail" in page and "PENDING" in page


def test_demo_page_shows_a_failures_message_not_its_json(client) -> None:  # type: ignore[no-untyped-def]
    import datetime as dt
    import json

    now = dt.datetime.now(dt.UTC)
    TaskResult.objects.create(
        task_id="f1", task_name="testproject.demo.tasks.fail", state="FAILURE", created_at=now,
        result=json.dumps({"exc_type": "ValueError", "exc_module": "builtins",
                           "exc_message": "this task always fails",
                           "exc_args": ["this task always fails"]}))
    TaskResult.objects.create(task_id="s1", task_name="testproject.demo.tasks.add",
                              state="SUCCESS", created_at=now, result="5")
    page = client.get("/").content.decode()
    assert "<td>ValueError: this task always fails</td>" in page
    assert "exc_type" not in page and "<td>5</td>" in page


def test_result_view_reports_state(client, settings) -> None:  # type: ignore[no-untyped-def]
    settings.TASKS_ALWAYS_EAGER = True
    from testproject.demo.tasks import add

    result = add.delay(2, 3)
    data = client.get(f"/result/{result.id}/").json()
    assert data == {"id": result.id, "state": "SUCCESS", "result": 5}


def test_email_task_sends_through_django_mail(settings, mailoutbox) -> None:  # type: ignore[no-untyped-def]
    settings.TASKS_ALWAYS_EAGER = True
    from testproject.demo.tasks import send_welcome_email

    assert send_welcome_email.delay("ada@example.com", "Ada").get() == 1
    assert mailoutbox[0].subject == "Welcome, Ada"


class DemoQueueTests(TestCase):
    """The tutorial's ``TaskQueue`` example, with Django's ``TestCase``."""

    def test_the_email_is_queued_then_sent(self) -> None:
        from testproject.demo.tasks import send_welcome_email

        with TaskQueue() as task_queue:
            self.client.post("/", {"kind": "email"})
            [message] = task_queue.assert_enqueued(send_welcome_email, ("ada@example.com", "Ada"))
            self.assertEqual(message.queue, "mail")
            self.assertEqual(mail.outbox, [])  # queued, not sent yet
            [result] = task_queue.run_pending()
        self.assertEqual(len(mail.outbox), 1)
        self.assertEqual(result.get(timeout=0), 1)
