"""The queue and worker admins."""

from __future__ import annotations

import html

import pytest
from django.test import Client, override_settings
from django.urls import reverse

from django_tasks.models import QueuedMessage, WorkerState

from .factories import make_message, make_worker

pytestmark = pytest.mark.django_db
QUEUE = reverse("admin:django_tasks_queuedmessage_changelist")
WORKERS = reverse("admin:django_tasks_workerstate_changelist")


def page(client: Client, url: str, params: dict[str, str] | None = None) -> str:
    response = client.get(url, params or {})
    assert response.status_code == 200
    return html.unescape(response.content.decode()).replace("<wbr>", "")


def test_queue_lists_messages_with_the_task_name_from_the_body(admin_client: Client) -> None:
    make_message("m-1", "shop.tasks.send_receipt", queue="mail")
    make_message("m-2", body="not json")
    text = page(admin_client, QUEUE)
    assert "shop.tasks.send_receipt" in text and "mail" in text
    assert "(undecodable)" in text


def test_queue_status_filter(admin_client: Client) -> None:
    make_message("ready-1")
    make_message("later-1", delay=600)
    make_message("held-1", delay=30, lease_owner="w1@host:1")
    make_message("lapsed-1", delay=-30, lease_owner="w9@gone:1")
    expected = {"ready": "ready-1", "delayed": "later-1", "leased": "held-1",
                "expired": "lapsed-1"}
    for status, task_id in expected.items():
        text = page(admin_client, QUEUE, {"status": status})
        shown = {t for t in expected.values() if f">{t}<" in text}
        assert shown == {task_id}, status
    assert "held by a worker" in page(admin_client, QUEUE)


def test_queue_search_and_detail(admin_client: Client) -> None:
    row = make_message("find-me")
    make_message("find-me-not")
    text = page(admin_client, QUEUE, {"q": "find-me"})
    assert ">find-me<" in text and "find-me-not" not in text
    detail = page(admin_client, reverse("admin:django_tasks_queuedmessage_change",
                                        args=[row.pk]))
    assert '"task": "demo.add"' in detail


def test_queued_messages_cannot_be_added_changed_or_deleted(admin_client: Client) -> None:
    row = make_message("stay")
    assert admin_client.get(reverse("admin:django_tasks_queuedmessage_add")).status_code == 403
    delete = reverse("admin:django_tasks_queuedmessage_delete", args=[row.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    assert QueuedMessage.objects.filter(pk=row.pk).exists()


@override_settings(TASKS_HEARTBEAT_SECONDS=5)
def test_workers_show_whether_they_look_alive(admin_client: Client) -> None:
    make_worker("live@host", beat_ago=3, queues="default,mail")
    make_worker("dead@host", beat_ago=16)  # more than three heartbeats ago
    text = page(admin_client, WORKERS)
    assert "live@host" in text and "default, mail" in text and "prefork" in text
    row = text.split(">live@host</a>")[1].split("</tr>")[0]
    assert 'alt="True"' in row
    row = text.split(">dead@host</a>")[1].split("</tr>")[0]
    assert 'alt="False"' in row
    alive = page(admin_client, WORKERS, {"alive": "yes"})
    assert "live@host" in alive and "dead@host" not in alive
    dead = page(admin_client, WORKERS, {"alive": "no"})
    assert "dead@host" in dead and "live@host" not in dead


def test_workers_show_the_tasks_they_ran_and_failed(admin_client: Client) -> None:
    from django_tasks.process import liveness

    make_worker("busy@host")
    identity = liveness.Identity(hostname="busy@host", pool="prefork", concurrency=2,
                                 queues="default")
    liveness.touch(identity, {"tasks_done": 1234, "tasks_failed": 56})  # what a beat writes
    row = page(admin_client, WORKERS).split(">busy@host</a>")[1].split("</tr>")[0]
    assert ">1234<" in row and ">56<" in row
    liveness.touch(identity)  # a beat process has no counts: they stay as they were
    assert WorkerState.objects.get(hostname="busy@host").tasks_done == 1234


def test_a_superuser_may_delete_a_dead_worker_row(admin_client: Client) -> None:
    row = make_worker("dead@host", beat_ago=3600)
    delete = reverse("admin:django_tasks_workerstate_delete", args=[row.pk])
    assert delete in page(admin_client, reverse("admin:django_tasks_workerstate_change",
                                                args=[row.pk]))
    assert admin_client.post(delete, {"post": "yes"}).status_code == 302
    assert not WorkerState.objects.exists()
    assert admin_client.get(reverse("admin:django_tasks_workerstate_add")).status_code == 403


def test_a_live_worker_has_no_delete_button_and_cannot_be_deleted(admin_client: Client) -> None:
    row = make_worker("live@host", beat_ago=1)
    delete = reverse("admin:django_tasks_workerstate_delete", args=[row.pk])
    text = page(admin_client, reverse("admin:django_tasks_workerstate_change", args=[row.pk]))
    assert delete not in text and "deletelink" not in text
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    assert WorkerState.objects.filter(pk=row.pk).exists()


def test_the_bulk_delete_keeps_live_workers(admin_client: Client) -> None:
    live, dead = make_worker("live@host", beat_ago=1), make_worker("dead@host", beat_ago=3600)
    text = page(admin_client, WORKERS)
    assert 'value="delete_stopped"' in text and 'value="delete_selected"' not in text
    response = admin_client.post(WORKERS, {"action": "delete_stopped", "index": "0",
                                           "_selected_action": [live.pk, dead.pk]}, follow=True)
    text = html.unescape(response.content.decode())
    assert "Deleted 1 row(s) of stopped workers." in text
    assert "Kept 1 row(s) of workers that are alive (live@host)" in text
    assert list(WorkerState.objects.values_list("hostname", flat=True)) == ["live@host"]


def test_workers_show_times_to_the_second(admin_client: Client) -> None:
    make_worker("w@host")
    text = page(admin_client, WORKERS)
    assert text.count('<span class="task-time">') == 4  # started and last heartbeat
