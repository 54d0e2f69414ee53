"""Idle consumers of one worker on the database broker share a publish's wake-up out: on
PostgreSQL every one of them hears the notification, and one message costs one claim, not
one per consumer. (SQLite's file watch and other databases do not count messages: each
consumer looks, as the turns allow; those runs check only that the message runs once.)"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection, connections

from django_tasks import states
from django_tasks.conf import get_broker, get_result_store
from django_tasks.publishing import publish
from django_tasks.task import Task, build_message
from django_tasks.worker import consumer as consumer_module
from django_tasks.worker import idle
from django_tasks.worker.consumer import Consumer

pytestmark = [pytest.mark.django_db(transaction=True),
              pytest.mark.usefixtures("database_tasks")]
ON_POSTGRES = connection.vendor == "postgresql"


def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_one_message_published_to_three_idle_consumers_is_claimed_once(
        define: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    task: Task[Any, Any] = define(name="unit.wake.echo")(lambda x: x)
    # No look by turn while the test runs: only wake-ups make the consumers fetch.
    monkeypatch.setattr(consumer_module, "IDLE_FETCH_SECONDS", 60.0)
    broker = get_broker()
    real_fetch = broker.fetch
    fetches: list[tuple[str, int]] = []

    def fetch(*args: Any, **kwargs: Any) -> Any:
        got = real_fetch(*args, **kwargs)
        fetches.append((threading.current_thread().name, len(got)))
        return got

    monkeypatch.setattr(broker, "fetch", fetch)
    stop = threading.Event()
    turns = idle.LookTurns()

    def consume(n: int) -> None:
        try:
            Consumer(queues=["default"], owner=f"test/{n}", hostname="test@host",
                     prefetch=16, lease=30, stop=stop, turns=turns).run()
        finally:
            connections.close_all()

    threads = [threading.Thread(target=consume, args=(n,), name=f"c{n}") for n in range(3)]
    for thread in threads:
        thread.start()
    try:
        # Each looks, listens, and looks again (what was sent before it listened): then idle.
        until(lambda: len({name for name, _ in fetches}) == 3)
        time.sleep(0.5)
        before = len(fetches)
        task_id = publish(build_message(task.name, (7,), {})).id
        store = get_result_store()
        assert store is not None
        until(lambda: (meta := store.get(task_id)) is not None and meta.state == states.SUCCESS)
        time.sleep(0.3)  # what the others would claim, they have claimed by now
        after = fetches[before:]
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    if ON_POSTGRES:
        # The one that claimed it, and its look for more; the other two never claimed.
        assert len({name for name, _ in after}) == 1, after
        assert [n for _, n in after] == [1, 0], after
    else:
        assert sum(n for _, n in after) == 1, after
