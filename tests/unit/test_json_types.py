"""The types Celery's JSON carries (bytes, datetime, date, time, Decimal, UUID) as task
arguments and return values: through the queue, the worker's code and the result store."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import pytest

from django_tasks import AsyncResult
from django_tasks.message import Message
from django_tasks.testing import TaskQueue

Define = Any

VALUES: dict[str, Any] = {
    "blob": b"\x89PNG\r\n\x1a\n\x00\xff",
    "text": "caf\u00e9".encode(),
    "when": dt.datetime(2026, 3, 29, 1, 30, 15, 250, tzinfo=dt.timezone(dt.timedelta(hours=2))),
    "day": dt.date(2026, 2, 28),
    "at": dt.time(23, 59, 58, 999),
    "price": Decimal("19.990"),
    "id": uuid.UUID("7d444840-9dc0-11d1-b245-5ffdce74fad2"),
}


def assert_same(value: dict[str, Any]) -> None:
    assert value == VALUES
    assert {k: type(v) for k, v in value.items()} == {k: type(v) for k, v in VALUES.items()}
    assert str(value["price"]) == "19.990"  # the exponent kept, not only the value


def echo_task(define: Define, name: str) -> Any:
    seen: list[dict[str, Any]] = []

    @define(name=name)
    def echo(positional: dict[str, Any], **named: Any) -> dict[str, Any]:
        assert_same(positional)
        assert_same(named)
        seen.append(positional)
        return named

    return echo, seen


def test_through_the_database_broker_the_worker_and_the_database_store(
        define: Define, task_queue: TaskQueue) -> None:
    echo, seen = echo_task(define, "unit.types.echo_db")
    result = echo.delay(VALUES, **VALUES)
    task_queue.run_pending()
    assert len(seen) == 1
    assert_same(result.get(timeout=0))
    assert_same(AsyncResult(result.id).get(timeout=0))  # read afresh from the row


@pytest.mark.usefixtures("memory_tasks")
def test_apply_and_eager_mode(define: Define, settings: Any) -> None:
    echo, seen = echo_task(define, "unit.types.echo_eager")
    assert_same(echo.apply((VALUES,), VALUES).get())
    settings.TASKS_ALWAYS_EAGER = True
    assert_same(echo.delay(VALUES, **VALUES).get())
    assert len(seen) == 2


def test_a_message_written_by_kombus_json_is_read_with_its_types() -> None:
    """What a Celery client sends (protocol v2 through kombu's JSON) arrives as itself."""
    kombu_json = pytest.importorskip("kombu.utils.json")
    body = kombu_json.dumps({
        "headers": {"lang": "py", "task": "app.echo", "id": "c-1", "retries": 0,
                    "root_id": "c-1", "parent_id": None, "group": None},
        "properties": {"delivery_info": {"routing_key": "default"}},
        "body": [[VALUES], VALUES, {"callbacks": None, "errbacks": None, "chain": None,
                                    "chord": None}],
    })
    message = Message.decode(body)
    assert_same(message.args[0])
    assert_same(message.kwargs)


def test_what_we_send_is_read_by_kombus_json_with_its_types() -> None:
    kombu_json = pytest.importorskip("kombu.utils.json")
    envelope = kombu_json.loads(Message(id="o-1", task="app.echo", args=(VALUES,),
                                        kwargs=VALUES).encode())
    args, kwargs, _embed = envelope["body"]
    assert_same(args[0])
    assert_same(kwargs)
