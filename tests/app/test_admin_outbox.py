"""The outbox admin: read-only, with each row's status in words."""

from __future__ import annotations

import datetime as dt
import html

import pytest
from django.test import Client
from django.urls import reverse

from django_tasks import outbox
from django_tasks.message import Message
from django_tasks.models import OutboxMessage

pytestmark = pytest.mark.django_db
OUTBOX = reverse("admin:django_tasks_outboxmessage_changelist")


def row(task_id: str, **fields: object) -> OutboxMessage:
    now = dt.datetime.now(dt.UTC)
    values: dict[str, object] = {"created_at": now, **fields}
    return OutboxMessage.objects.create(
        task_id=task_id, queue="default",
        body=Message(id=task_id, task="shop.tasks.send_receipt").encode(), **values)


def test_the_outbox_lists_rows_with_their_status(admin_client: Client) -> None:
    now = dt.datetime.now(dt.UTC)
    row("fresh")
    row("orphan", created_at=now - outbox.GRACE - dt.timedelta(seconds=5))
    row("later", due_at=now + dt.timedelta(hours=1))
    row("busy", claimed_until=now + dt.timedelta(seconds=30), claim=3)
    response = admin_client.get(OUTBOX)
    assert response.status_code == 200
    text = html.unescape(response.content.decode())
    for words in ("committed: its process publishes it", "left behind: a worker publishes it",
                  "delayed", "being published", "shop.tasks.send_receipt"):
        assert words in text
    detail = admin_client.get(reverse("admin:django_tasks_outboxmessage_change",
                                      args=[OutboxMessage.objects.get(task_id="later").pk]))
    assert detail.status_code == 200 and "shop.tasks.send_receipt" in detail.content.decode()


def test_outbox_rows_cannot_be_added_changed_or_deleted(admin_client: Client) -> None:
    kept = row("kept")
    assert admin_client.get(reverse("admin:django_tasks_outboxmessage_add")).status_code == 403
    delete = reverse("admin:django_tasks_outboxmessage_delete", args=[kept.pk])
    admin_client.post(delete, {"post": "yes"})
    assert OutboxMessage.objects.filter(pk=kept.pk).exists()
