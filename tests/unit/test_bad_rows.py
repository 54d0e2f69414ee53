"""Rows nobody should have written, on the database broker of the test database (SQLite,
PostgreSQL or MariaDB, whichever the run uses): each ends on its own, recorded where an id can
be stored, and its batch-mates run exactly once."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import override_settings

from django_tasks import shared_task, states
from django_tasks.conf import get_broker, reset_cache
from django_tasks.message import Message
from django_tasks.models import QueuedMessage, TaskResult
from django_tasks.registry import registry
from django_tasks.worker.consumer import Consumer

pytestmark = pytest.mark.django_db
runs: list[int] = []


@shared_task(name="unit.bad.add")
def add(x: int, y: int) -> int:
    runs.append(x)
    return x + y


@pytest.fixture(autouse=True)
def _database_broker() -> Iterator[None]:
    with override_settings(TASKS_BROKER_URL="django://", TASKS_RESULT_BACKEND="django://"):
        reset_cache()
        runs.clear()
        yield
    reset_cache()


def teardown_module() -> None:
    registry.unregister("unit.bad.add")


def raw(task_id: str, body: str) -> None:
    now = dt.datetime.now(dt.UTC)
    QueuedMessage.objects.create(queue="default", task_id=task_id, body=body, visible_at=now,
                                 created_at=now)


def envelope(**headers: Any) -> dict[str, Any]:
    env = Message(id="x", task="unit.bad.add", args=(1, 2)).to_envelope()
    env["headers"].update(headers)
    return env


BAD_BODIES = {
    "nan": '{"headers": {"id": "nan-1", "task": "unit.bad.add"}, "properties": {}, '
           '"body": [[NaN, 1], {}, {}]}',
    "nul-name": json.dumps(envelope(id="nul-1", task="unit.bad.a\x00dd")),
    "surrogate-id": json.dumps(envelope(id="\ud800")),
    "deep": '{"headers": {"id": "deep-1", "task": "unit.bad.add"}, "properties": {}, '
            '"body": [[' + "[" * 100_000 + "]" * 100_000 + ', 1], {}, {}]}',
    "huge-int": '{"headers": {"id": "huge-1", "task": "unit.bad.add"}, "properties": {}, '
                '"body": [[' + "9" * 5000 + ', 1], {}, {}]}',
    "huge-retries": json.dumps(envelope(id="retries-1", retries=10**30)),
    "long-id": json.dumps(envelope(id="i" * 300)),
    "long-name": json.dumps(envelope(id="long-name-1", task="n" * 300)),
}
# The id each bad row can be recorded under (the queue row's own task_id column, where the
# body's id cannot be stored), or None: then it is only logged.
RECORDED_AS = {"nan": "row-nan", "nul-name": "nul-1", "surrogate-id": "row-surrogate-id",
               "deep": "row-deep", "huge-int": "row-huge-int", "huge-retries": "retries-1",
               "long-id": "row-long-id", "long-name": "long-name-1"}


@pytest.mark.parametrize("kind", sorted(BAD_BODIES))
def test_a_bad_row_ends_alone_and_its_batch_mates_run_once(
        kind: str, caplog: pytest.LogCaptureFixture) -> None:
    good = [add.delay(i, i).id for i in range(3)]
    raw(f"row-{kind}", BAD_BODIES[kind])
    good += [add.delay(i, i).id for i in range(3, 6)]
    consumer = Consumer(queues=["default"], owner="test/1", hostname="test@host",
                        prefetch=16, lease=30, stop=threading.Event())
    consumer.process(get_broker().fetch(["default"], "test/1", 16, 30))
    assert sorted(runs) == list(range(6)), "an innocent batch-mate ran twice, or not at all"
    assert set(TaskResult.objects.filter(task_id__in=good).values_list("state", flat=True)) \
        == {states.SUCCESS}
    assert QueuedMessage.objects.count() == 0
    assert not consumer.settler.waiting
    bad = TaskResult.objects.get(task_id=RECORDED_AS[kind])
    assert bad.state == states.FAILURE
    assert json.loads(bad.result)["exc_type"] == "DecodeError"
    assert "Rejected" in caplog.text
    assert "\x00" not in caplog.text, "a NUL reached the log raw"
