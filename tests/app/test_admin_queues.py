"""The admin's queues page, through Django's test client: the counts on the database broker,
on Redis (with the outbox) and on RabbitMQ (in flight not known), who may see it, the broker's
password, and a number of queries that does not grow with the messages."""

from __future__ import annotations

import datetime as dt
import html
import re
import uuid
from collections.abc import Iterator

import pytest
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from django_tasks.conf import get_broker, reset_cache
from django_tasks.message import Message
from django_tasks.models import OutboxMessage, QueuedMessage
from tests.conftest import require_service

from .factories import make_message, make_worker, now

pytestmark = pytest.mark.django_db
QUEUES = reverse("admin:django_tasks_queues_changelist")
CELLS = ("ready", "delayed", "in-flight", "outbox", "consumers")


def rows(page: str) -> dict[str, dict[str, str]]:
    """Each queue's row of the table: its cells' text by class (``ready``, ``delayed``...)."""
    found = {}
    for queue, body in re.findall(r'<tr data-queue="([^"]*)"[^>]*>(.*?)</tr>', page, re.S):
        cells = dict(re.findall(r'<td class="tq-num tq-([a-z-]+)">(.*?)</td>', body, re.S))
        found[html.unescape(queue)] = {
            name: re.sub(r"<[^>]+>", "", text).strip() for name, text in cells.items()}
    return found


def page(client: Client) -> str:
    response = client.get(QUEUES)
    assert response.status_code == 200
    return response.content.decode()


@pytest.fixture
def broker_url() -> Iterator[object]:
    """Run the page on another broker: ``broker_url("redis://...")``."""
    stack: list[override_settings] = []

    def use(url: str, **settings: object) -> None:
        stack.append(override_settings(TASKS_BROKER_URL=url, **settings))
        stack[-1].enable()
        reset_cache()

    yield use
    for override in reversed(stack):
        override.disable()
    reset_cache()


def test_listed_beside_the_dashboard_and_the_workers(admin_client: Client) -> None:
    index = admin_client.get(reverse("admin:app_list", args=["django_tasks"])).content.decode()
    assert QUEUES in index
    assert reverse("admin:django_tasks_dashboard_changelist") in index
    assert QUEUES in admin_client.get(reverse("admin:index")).content.decode()


def test_ready_delayed_and_in_flight_on_the_database_broker(admin_client: Client) -> None:
    make_message("r-1")
    make_message("r-2")
    make_message("d-1", delay=3600)
    make_message("l-1", delay=30, lease_owner="w1@host-1")
    make_message("gone", delay=-5, lease_owner="w9@dead-1")  # lease ran out: ready again
    make_message("m-1", queue="mail", delay=600)
    make_message("o-1", queue="orphans")
    make_worker("w1@host", queues="default,mail")
    text = page(admin_client)
    assert "<h1>Queues</h1>" in text
    assert '<code id="tq-broker">django://</code>' in text
    shown = rows(text)
    assert shown["default"] == {"ready": "3", "delayed": "1", "in-flight": "1",
                                "consumers": "1"}
    assert shown["mail"] == {"ready": "0", "delayed": "1", "in-flight": "0", "consumers": "1"}
    # A queue nobody consumes but that has messages is found, and marked.
    assert shown["orphans"]["ready"] == "1" and "no worker" in shown["orphans"]["consumers"]
    assert 'class="tq-idle"' in text
    assert "outbox" not in shown["default"]  # the database broker has none
    # The queue's name leads to its messages.
    assert f'{reverse("admin:django_tasks_queuedmessage_changelist")}?queue=mail' in text
    totals = re.search(r'<tr id="tq-totals">(.*?)</tr>', text, re.S)
    assert totals and re.findall(r'tq-num">(\d+)<', totals.group(1)) == ["4", "2", "1"]


def test_the_queries_do_not_grow_with_the_messages(admin_client: Client) -> None:
    make_message("first")
    make_worker("w1@host")
    admin_client.get(QUEUES)  # the session, the content types: read once
    with CaptureQueriesContext(connection) as few:
        page(admin_client)
    QueuedMessage.objects.bulk_create([
        QueuedMessage(queue=f"q{i % 7}", task_id=f"t-{i}", body="{}", created_at=now(),
                      visible_at=now() + dt.timedelta(seconds=(i % 3 - 1) * 60),
                      lease_owner="w1@host-1" if i % 3 == 2 else None)
        for i in range(500)])
    for i in range(20):
        make_worker(f"w{i}@more", queues=f"q{i % 7}")
    with CaptureQueriesContext(connection) as many:
        text = page(admin_client)
    assert len(many) == len(few) == 4, [q["sql"] for q in many.captured_queries]
    assert rows(text)["q0"]["ready"] != "0"


# Who may see the page: tests/app/test_admin_dashboard.py (the same checks for both pages).


def test_the_broker_password_is_masked(admin_client: Client, broker_url: object) -> None:
    broker_url("memory://tasks:s3cret-pw@broker.internal/0")  # type: ignore[operator]
    text = page(admin_client)
    assert "s3cret-pw" not in text
    assert '<code id="tq-broker">memory://tasks:**@broker.internal/0</code>' in text


def test_a_broker_that_cannot_be_asked_is_said_so(admin_client: Client,
                                                  broker_url: object,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    broker_url("memory://tasks:s3cret-pw@broker.internal/0")  # type: ignore[operator]

    def down(queues: object = ()) -> object:
        raise OSError("connection refused to memory://tasks:s3cret-pw@broker.internal/0")

    monkeypatch.setattr(get_broker(), "queue_counts", down)
    text = page(admin_client)
    assert '<p class="errornote" id="tq-error">The broker could not be asked: OSError</p>' \
        in text
    assert "s3cret-pw" not in text


def test_redis_with_the_outbox(admin_client: Client, broker_url: object) -> None:
    require_service("Redis", "127.0.0.1", 6379)
    broker_url("redis://127.0.0.1:6379/11?prefix=admin-queues")  # type: ignore[operator]
    broker = get_broker()
    broker._client.flushdb()  # type: ignore[attr-defined]
    try:
        later = now() + dt.timedelta(hours=1)
        broker.publish([Message(id=f"r{i}", task="demo.add", queue="default") for i in range(3)])
        broker.publish([Message(id="d1", task="demo.add", queue="default", eta=later)])
        broker.fetch(["default"], "w1@host-1", 1, 30)
        OutboxMessage.objects.create(task_id="x1", queue="default", body="{}",
                                     created_at=now())
        text = page(admin_client)
    finally:
        broker._client.flushdb()  # type: ignore[attr-defined]
    assert '<code id="tq-broker">redis://127.0.0.1:6379/11?prefix=admin-queues</code>' in text
    assert rows(text)["default"] == {"ready": "2", "delayed": "1", "in-flight": "1",
                                     "outbox": "1", "consumers": "0 no worker"}
    assert "Outbox</dt>" in text


def test_rabbitmq_says_in_flight_is_not_known(admin_client: Client,
                                              broker_url: object) -> None:
    require_service("RabbitMQ", "127.0.0.1", 5672)
    queue = f"test-{uuid.uuid4().hex[:12]}"
    # The page's queues: the default one (a queue of this test's own) and the tasks' queues.
    broker_url("amqp://guest:guest@127.0.0.1:5672//", TASKS_DEFAULT_QUEUE=queue)  # type: ignore[operator]
    broker = get_broker()
    try:
        broker.publish([Message(id=f"a{i}", task="demo.add", queue=queue) for i in range(2)])
        OutboxMessage.objects.create(task_id="h1", queue=queue, body="{}", created_at=now(),
                                     due_at=now() + dt.timedelta(hours=1))
        OutboxMessage.objects.create(task_id="u1", queue=queue, body="{}", created_at=now())
        text = page(admin_client)
    finally:
        session, _ = broker._publisher()  # type: ignore[attr-defined]
        session.channel.queue_delete(queue=queue)
        broker.close()
    assert '<code id="tq-broker">amqp://guest:**@127.0.0.1:5672//</code>' in text
    assert rows(text)[queue] == {"ready": "2", "delayed": "1", "in-flight": "not known",
                                 "outbox": "1", "consumers": "0 no worker"}
    assert "RabbitMQ does not tell an AMQP client how many messages" in text
