"""The admin pages and the management commands, through Django's test client."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from django_tasks import states
from django_tasks.models import QueuedMessage, TaskResult, WorkerState

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def make_result(task_id: str, state: str = states.SUCCESS, done_ago: float | None = 0,
                **extra: object) -> TaskResult:
    now = dt.datetime.now(dt.UTC)
    done = None if done_ago is None else now - dt.timedelta(seconds=done_ago)
    fields: dict[str, object] = {
        "task_id": task_id, "task_name": "demo.add", "state": state, "args": "[1, 2]",
        "kwargs": "{}", "result": "3", "queue": "default", "worker": "w1@host",
        "created_at": now, "started_at": done and done - dt.timedelta(seconds=1.5),
        "date_done": done,
    }
    fields.update(extra)
    return TaskResult.objects.create(**fields)


@pytest.fixture
def staff(admin_client):  # type: ignore[no-untyped-def]
    return admin_client


def test_changelist_shows_state_queue_worker_and_runtime(staff) -> None:  # type: ignore[no-untyped-def]
    make_result("aaa")
    page = staff.get(reverse("admin:django_tasks_taskresult_changelist")).content.decode()
    assert "aaa" in page and "SUCCESS" in page and "w1@host" in page and "1.500" in page
    assert "Add task result" not in page


def test_filters_and_search(staff) -> None:  # type: ignore[no-untyped-def]
    make_result("ok-1")
    make_result("bad-1", states.FAILURE, result='{"exc_type": "ValueError"}')
    url = reverse("admin:django_tasks_taskresult_changelist")
    failed = staff.get(url, {"state__exact": "FAILURE"}).content.decode()
    assert "bad-1" in failed and "ok-1" not in failed
    found = staff.get(url, {"q": "ok-1"}).content.decode()
    assert "ok-1" in found and "bad-1" not in found
    by_queue = staff.get(url, {"queue": "default"})
    assert by_queue.status_code == 200


def test_detail_shows_arguments_result_and_traceback(staff) -> None:  # type: ignore[no-untyped-def]
    row = make_result("bad-2", states.FAILURE, traceback="Traceback ...\nValueError: <nope>",
                      result='{"exc_type": "ValueError", "exc_message": "nope"}')
    page = staff.get(reverse("admin:django_tasks_taskresult_change", args=[row.pk]))
    text = page.content.decode()
    assert page.status_code == 200
    assert "ValueError: &lt;nope&gt;" in text  # escaped, readable
    assert '"exc_type": "ValueError"' in text.replace("&quot;", '"')


def test_results_cannot_be_added_or_changed(staff) -> None:  # type: ignore[no-untyped-def]
    row = make_result("x")
    assert staff.get(reverse("admin:django_tasks_taskresult_add")).status_code == 403
    response = staff.post(reverse("admin:django_tasks_taskresult_change", args=[row.pk]),
                          {"state": "FAILURE"})
    assert response.status_code == 403
    row.refresh_from_db()
    assert row.state == states.SUCCESS


def test_queue_and_worker_pages(staff) -> None:  # type: ignore[no-untyped-def]
    QueuedMessage.objects.create(queue="default", task_id="q1", body='{"headers": {"task": '
                                 '"demo.add"}}', visible_at=NOW, created_at=NOW)
    WorkerState.objects.create(hostname="w1@host", pid=1, pool="prefork", concurrency=2,
                               queues="default", started_at=NOW, last_heartbeat=NOW)
    queue = staff.get(reverse("admin:django_tasks_queuedmessage_changelist")).content.decode()
    assert "demo.add" in queue
    workers = staff.get(reverse("admin:django_tasks_workerstate_changelist")).content.decode()
    assert "w1@host" in workers


def test_taskprune_deletes_only_expired_finished_results(settings) -> None:  # type: ignore[no-untyped-def]
    settings.TASKS_RESULT_EXPIRES = dt.timedelta(hours=1)
    for i in range(5):
        make_result(f"old-{i}", done_ago=7200)
    make_result("new", done_ago=10)
    make_result("running", states.STARTED, done_ago=None)
    out = io.StringIO()
    call_command("taskprune", "--batch-size", "2", stdout=out)
    assert "Deleted 5 results" in out.getvalue()
    assert set(TaskResult.objects.values_list("task_id", flat=True)) == {"new", "running"}


def test_taskprune_older_than_and_never(settings) -> None:  # type: ignore[no-untyped-def]
    make_result("a", done_ago=100)
    settings.TASKS_RESULT_EXPIRES = None
    out = io.StringIO()
    call_command("taskprune", stdout=out)
    assert "never expire" in out.getvalue()
    call_command("taskprune", "--older-than", "50", stdout=out)
    assert not TaskResult.objects.exists()


def test_taskresult_prints_state_result_and_traceback() -> None:
    make_result("r1", states.FAILURE, traceback="Traceback: boom",
                result='{"exc_type": "ValueError", "exc_module": "builtins", '
                       '"exc_message": "boom"}')
    out = io.StringIO()
    call_command("taskresult", "r1", "--show-traceback", stdout=out)
    text = out.getvalue()
    assert "demo.add[r1] FAILURE" in text and "ValueError('boom')" in text
    assert "Traceback: boom" in text
    with pytest.raises(CommandError, match="No task with id nope"):
        call_command("taskresult", "nope")


def test_no_missing_migrations() -> None:
    out = io.StringIO()
    call_command("makemigrations", "django_tasks", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()
