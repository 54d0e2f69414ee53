"""Revoke and terminate from the result admin, through Django's test client: the
confirmation page, what is revoked and what is skipped, the control channel asked to stop
running tasks, the result page's buttons, and the permission."""

from __future__ import annotations

import html
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client, override_settings
from django.urls import reverse

from django_tasks import states
from django_tasks.conf import reset_cache
from django_tasks.control.channel import Reply
from django_tasks.models import TaskResult

from .factories import make_result, make_worker

pytestmark = pytest.mark.django_db
LIST = reverse("admin:django_tasks_taskresult_changelist")


@pytest.fixture(autouse=True)
def database_store() -> Iterator[None]:
    with override_settings(TASKS_BROKER_URL="django://", TASKS_RESULT_BACKEND="django://",
                           TASKS_ALWAYS_EAGER=False):
        reset_cache()
        yield
    reset_cache()


@pytest.fixture
def workers(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    """The control channel as the admin uses it: what it sent, and a worker that says it
    stopped the tasks it was told about whose id starts with "running"."""
    from django_tasks.control import channel

    sent: list[tuple[str, dict[str, Any]]] = []

    def broadcast(command: str, arguments: dict[str, Any], **options: Any) -> list[Reply]:
        sent.append((command, arguments))
        stopped = [i for i in arguments["task_ids"] if i.startswith("running")]
        return [Reply("w1@host", {"ok": {"terminated": stopped}})]

    monkeypatch.setattr(channel, "broadcast", broadcast)
    return sent


def post(client: Client, action: str, *rows: TaskResult, confirm: bool = True,
         **extra: str) -> str:
    data: dict[str, Any] = {"action": action, "_selected_action": [row.pk for row in rows],
                            **extra}
    if confirm:
        data["post"] = "yes"
    else:
        data["index"] = "0"
    response = client.post(LIST, data, follow=True)
    assert response.status_code == 200
    return html.unescape(response.content.decode())


def state(task_id: str) -> str:
    return TaskResult.objects.get(task_id=task_id).state


def test_revoke_asks_first_and_says_what_will_happen(admin_client: Client) -> None:
    queued = make_result("queued-1", states.PENDING, done_ago=None)
    running = make_result("running-1", states.STARTED, done_ago=None)
    done = make_result("done-1")
    text = post(admin_client, "revoke_tasks", queued, running, done, confirm=False)
    assert "Revoke tasks?" in text and "Yes, revoke" in text
    assert "2 of 3 selected tasks will be revoked, 1 of them running now" in text
    assert "revoked: it never runs" in text
    assert "left to finish its run" in text
    assert "already finished (SUCCESS): skipped" in text
    assert 'name="csrfmiddlewaretoken"' in text
    assert state("queued-1") == states.PENDING  # nothing happened yet


def test_revoke_marks_unfinished_tasks_revoked_and_skips_finished_ones(
        admin_client: Client, workers: list[Any]) -> None:
    rows = [make_result(f"queued-{i}", states.PENDING, done_ago=None) for i in range(2)]
    rows.append(make_result("retrying", states.RETRY, done_ago=None))
    rows.append(make_result("running", states.STARTED, done_ago=None))
    rows.append(make_result("done"))
    text = post(admin_client, "revoke_tasks", *rows)
    assert "4 tasks revoked. 1 running task left to finish" in text
    assert "Skipped 1 task that had already finished (SUCCESS, FAILURE or REVOKED): done." \
        in text
    assert [state(r.task_id) for r in rows] == [states.REVOKED] * 4 + [states.SUCCESS]
    assert workers == []  # a plain revoke asks no worker: it is stored


def test_terminate_stops_running_tasks_through_the_control_channel(
        admin_client: Client, workers: list[Any]) -> None:
    make_worker("w1@host")
    rows = [make_result(f"queued-{i}", states.PENDING, done_ago=None) for i in range(2)]
    rows.append(make_result("running", states.STARTED, done_ago=None))
    rows.append(make_result("done", states.FAILURE))
    text = post(admin_client, "terminate_tasks", *rows)
    assert "3 tasks revoked; 1 running task terminated." in text
    assert "Skipped 1 task that had already finished" in text
    [(command, arguments)] = workers
    assert command == "revoke" and arguments["terminate"] is True
    assert sorted(arguments["task_ids"]) == ["queued-0", "queued-1", "running"]
    assert [state(r.task_id) for r in rows] == [states.REVOKED] * 3 + [states.FAILURE]


def test_terminate_says_when_no_worker_was_running_the_task(
        admin_client: Client, workers: list[Any]) -> None:
    running = make_result("orphan", states.STARTED, done_ago=None)
    text = post(admin_client, "terminate_tasks", running)
    assert "1 task revoked; 0 running tasks terminated." in text
    assert "1 task shown as running was not found running on any worker: no worker is " \
           "online (orphan); it is REVOKED and never run again." in text
    assert workers == []  # nobody online to ask
    assert state("orphan") == states.REVOKED


def test_the_result_page_has_revoke_and_terminate_buttons_while_unfinished(
        admin_client: Client) -> None:
    queued = make_result("queued-1", states.PENDING, done_ago=None)
    page = html.unescape(admin_client.get(
        reverse("admin:django_tasks_taskresult_change", args=[queued.pk])).content.decode())
    assert 'value="revoke_tasks"' in page and 'value="terminate_tasks"' in page
    # The button's form leads to the confirmation page; confirming comes back to the page.
    text = post(admin_client, "revoke_tasks", queued, confirm=False,
                _return_to_result=str(queued.pk))
    assert f'name="_return_to_result" value="{queued.pk}"' in text
    response = admin_client.post(LIST, {"action": "revoke_tasks", "post": "yes",
                                        "_selected_action": [queued.pk],
                                        "_return_to_result": str(queued.pk)})
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:django_tasks_taskresult_change",
                                           args=[queued.pk])
    assert state("queued-1") == states.REVOKED
    page = admin_client.get(response["Location"]).content.decode()
    assert "1 task revoked." in page
    assert 'value="revoke_tasks"' not in page  # finished now: no buttons


def test_revoke_refuses_too_many_at_once(admin_client: Client,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from django_tasks.admin import revoking

    monkeypatch.setattr(revoking, "REVOKE_LIMIT", 2)
    rows = [make_result(f"q{i}", states.PENDING, done_ago=None) for i in range(3)]
    text = post(admin_client, "revoke_tasks", *rows)
    assert "More than 2 tasks selected; revoke at most 2 at a time" in text
    assert not TaskResult.objects.filter(state=states.REVOKED).exists()


def viewer(client: Client, *codenames: str) -> User:
    user = User.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client.force_login(user)
    return user


def test_revoke_needs_its_own_permission(client: Client) -> None:
    viewer(client, "view_taskresult", "rerun_taskresult")
    queued = make_result("queued-1", states.PENDING, done_ago=None)
    listing = client.get(LIST).content.decode()
    assert 'value="revoke_tasks"' not in listing and 'value="terminate_tasks"' not in listing
    page = client.get(reverse("admin:django_tasks_taskresult_change",
                              args=[queued.pk])).content.decode()
    assert 'value="revoke_tasks"' not in page
    for action in ("revoke_tasks", "terminate_tasks"):
        text = post(client, action, queued)  # posted anyway: refused
        assert "No action selected." in text
        text = post(client, action, queued, confirm=False)
        assert "Revoke tasks?" not in text and "Terminate tasks?" not in text
    assert state("queued-1") == states.PENDING


def test_a_user_with_the_revoke_permission_may_revoke(client: Client) -> None:
    viewer(client, "view_taskresult", "revoke_taskresult")
    queued = make_result("queued-1", states.PENDING, done_ago=None)
    listing = client.get(LIST).content.decode()
    assert 'value="revoke_tasks"' in listing and 'value="queue_again"' not in listing
    assert "1 task revoked." in post(client, "revoke_tasks", queued)
    assert state("queued-1") == states.REVOKED


def test_revoke_is_post_only_with_csrf() -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(User.objects.create_superuser("root", password="pw"))
    queued = make_result("queued-1", states.PENDING, done_ago=None)
    response = client.post(LIST, {"action": "revoke_tasks", "post": "yes",
                                  "_selected_action": [queued.pk]})
    assert response.status_code == 403
    assert state("queued-1") == states.PENDING
