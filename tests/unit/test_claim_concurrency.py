"""Concurrent claims on the database broker: every message goes to exactly one claimer.

Each thread has its own database connection, so this runs the backend's real claim path:
``UPDATE … RETURNING`` with ``SKIP LOCKED`` on PostgreSQL, ``UPDATE … RETURNING`` on SQLite,
and ``SELECT … FOR UPDATE SKIP LOCKED`` plus an ``UPDATE`` on MySQL and MariaDB.
"""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from django.db import connection, connections

from django_tasks.brokers.database import DatabaseBroker
from django_tasks.message import Message

CLAIMERS = 4
MESSAGES = 400


def _claim_until_empty(broker: DatabaseBroker, owner: str, out: list[str],
                       errors: list[Exception], start: threading.Barrier,
                       queues: list[str]) -> None:
    try:
        start.wait()
        while deliveries := broker.fetch(queues, owner, limit=7, lease=60):
            out.extend(Message.decode(d.body).id for d in deliveries)
    except Exception as exc:  # noqa: BLE001 - reported by the test, not lost in the thread
        errors.append(exc)
    finally:
        connections.close_all()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("queues", [["default"], ["default", "mail"]])
def test_concurrent_claimers_never_share_a_message(queues: list[str]) -> None:
    """One queue, and two (their due rows merged on PostgreSQL, each locked as taken),
    with priorities mixed."""
    broker = DatabaseBroker("django://")
    broker.publish([Message(id=f"m{i}", task="t", queue=queues[i % len(queues)],
                            priority=i % 3 * 4) for i in range(MESSAGES)])
    claimed: list[list[str]] = [[] for _ in range(CLAIMERS)]
    errors: list[Exception] = []
    start = threading.Barrier(CLAIMERS)
    threads = [threading.Thread(target=_claim_until_empty,
                                args=(broker, f"w{n}", claimed[n], errors, start, queues))
               for n in range(CLAIMERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    counts = Counter(task_id for ids in claimed for task_id in ids)
    assert sorted(counts) == sorted(f"m{i}" for i in range(MESSAGES))
    assert set(counts.values()) == {1}, f"claimed twice on {connection.vendor}"
    assert broker.fetch(queues, "late", limit=10, lease=60) == []


@pytest.mark.django_db(transaction=True)
def test_a_claim_is_not_stopped_by_another_transaction() -> None:
    """Where rows can be locked, a claim skips the rows another transaction holds and takes
    the rest without waiting; SQLite locks the whole file, so there a claim waits for the
    other writer to commit and then takes everything, instead of failing as locked."""
    from django.db import transaction

    from django_tasks.models import QueuedMessage

    skips = connection.features.has_select_for_update_skip_locked
    broker = DatabaseBroker("django://")
    broker.publish([Message(id=f"m{i}", task="t") for i in range(10)])
    held: list[str] = []
    errors: list[Exception] = []
    locked, done = threading.Event(), threading.Event()

    def hold_first_five() -> None:
        try:
            with transaction.atomic():  # BEGIN IMMEDIATE on SQLite: the file's write lock
                held.extend(QueuedMessage.objects.select_for_update().order_by("id")
                            .values_list("task_id", flat=True)[:5])
                locked.set()
                done.wait(timeout=30 if skips else 0.5)
        except Exception as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
            locked.set()
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold_first_five)
    holder.start()
    try:
        assert locked.wait(timeout=30)
        got = [Message.decode(d.body).id
               for d in broker.fetch(["default"], "w", limit=10, lease=60)]
    finally:
        done.set()
        holder.join(timeout=30)
    assert not errors, errors
    assert held == [f"m{i}" for i in range(5)]
    expected = range(5, 10) if skips else range(10)
    assert sorted(got) == sorted(f"m{i}" for i in expected)
