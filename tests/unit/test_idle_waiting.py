"""Idle waiting: the turns a worker's consumers share, and SQLite's file watch."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import sqlite3
import threading
from pathlib import Path

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from django_tasks import clock as clock_module
from django_tasks import notify
from django_tasks.brokers import filewatch
from django_tasks.brokers.database import DatabaseBroker
from django_tasks.message import Message
from django_tasks.worker import idle


class _Clock:
    def __init__(self) -> None:
        self.now = 64.0  # exact in binary, so that pauses subtract exactly

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    fake = _Clock()
    monkeypatch.setattr(idle, "time", fake)
    return fake


def test_one_consumer_looks_while_the_others_wait_their_turn(clock: _Clock) -> None:
    turns = idle.LookTurns()
    assert turns.take(1.0) == 0.0  # this one looks ...
    assert turns.take(1.0) == 1.0  # ... and the others wait while it does
    turns.found_nothing(1.0)
    assert turns.take(1.0) == pytest.approx(idle.FIRST_PAUSE)
    clock.now += idle.FIRST_PAUSE
    assert turns.take(1.0) == 0.0


def test_pauses_double_up_to_the_longest_and_work_ends_them(clock: _Clock) -> None:
    turns = idle.LookTurns()
    pauses = []
    for _ in range(14):
        assert turns.take(0.5) == 0.0
        turns.found_nothing(0.5)
        pauses.append(turns.take(0.5))
        clock.now += pauses[-1]
    assert pauses[:3] == pytest.approx([0.001, 0.002, 0.004])
    assert pauses[-3:] == pytest.approx([0.5, 0.5, 0.5])
    turns.take(0.5)
    turns.found_work()  # every consumer may look again at once
    assert turns.take(0.5) == 0.0
    turns.found_nothing(0.5)
    assert turns.take(0.5) == pytest.approx(idle.FIRST_PAUSE)


def test_where_the_broker_wakes_consumers_the_pause_is_the_longest_at_once(clock: _Clock) -> None:
    turns = idle.LookTurns()
    turns.take(1.0)
    turns.found_nothing(1.0, double=False)
    assert turns.take(1.0) == 1.0


def test_one_consumer_looks_when_the_expected_message_comes_due(clock: _Clock) -> None:
    turns = idle.LookTurns()
    assert turns.take_due() is None  # nothing expected
    turns.expect(clock.now + 0.5)
    assert turns.take_due() == pytest.approx(0.5)
    clock.now += 0.5
    assert turns.take_due() == 0.0  # this one looks ...
    assert turns.take_due() is None  # ... the others wait for the broker's next answer
    turns.expect(clock.now + 3.0)
    turns.expect(None)  # the latest answer replaces the one before
    assert turns.take_due() is None


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("database_tasks")
def test_an_idle_look_on_a_database_that_cannot_wake_workers_is_one_plain_read() -> None:
    """MySQL and MariaDB wake no worker: an idle one polls. After a fetch that found
    nothing, the next reads the queues' earliest ``visible_at`` (no lock, no transaction)
    and claims only if a message is due; ``next_due`` answers from that read. Elsewhere a
    look is the claim, and ``next_due`` a read of its own."""
    broker = DatabaseBroker("django://")
    start = clock_module.now()
    broker.publish([Message(id="later", task="unit.idle.t", eta=start + dt.timedelta(seconds=60))])
    assert broker.fetch(["default"], "w1", 10, 30) == []
    since = clock_module.now()
    with CaptureQueriesContext(connection) as looked:
        assert broker.fetch(["default"], "w1", 10, 30) == []
        due = broker.next_due(["default"], since)
    assert due == pytest.approx(60, abs=5)
    sent = [q["sql"] for q in looked.captured_queries]
    if connection.vendor == "mysql":
        assert len(sent) == 1 and "MIN" in sent[0] and "FOR UPDATE" not in sent[0], sent
    else:
        assert len(sent) == 2 and "lease_owner" in sent[0] and "MIN" in sent[1], sent
    broker.publish([Message(id="now", task="unit.idle.t")])
    [delivery] = broker.fetch(["default"], "w1", 10, 30)  # due: read, then claimed
    assert delivery.task_id == "now"


def _take_in_child(turns: idle.LookTurns, out: object) -> None:
    out.value = turns.take(1.0)  # type: ignore[attr-defined]


def test_a_forked_process_shares_the_turns() -> None:
    turns = idle.LookTurns()
    assert turns.take(5.0) == 0.0
    ctx = multiprocessing.get_context("fork")
    seen = ctx.Value("d", -1.0)
    child = ctx.Process(target=_take_in_child, args=(turns, seen))
    child.start()
    child.join()
    assert 4.0 < seen.value <= 5.0  # the parent's turn holds in the child


def test_a_publishs_wake_up_is_shared_out_a_batch_each() -> None:
    """Every idle process hears a publish's notification: the first claims up to its batch,
    the next ones only while messages are left over, the rest go back to waiting."""
    turns = idle.LookTurns()
    one, five = notify.wake(1), notify.wake(5)
    assert [turns.share(one, 4) for _ in range(3)] == [True, False, False]
    assert [turns.share(five, 2) for _ in range(4)] == [True, True, True, False]
    assert all(turns.share("", 1) for _ in range(3))  # not a publish's: everyone looks
    assert turns.share("not a wake-up", 1) and turns.share("0123456789ab 1 2", 1)


def test_the_oldest_wake_ups_are_forgotten() -> None:
    turns = idle.LookTurns()
    first = notify.wake(1)
    assert turns.share(first, 1) and not turns.share(first, 1)
    for _ in range(idle.WAKES - 1):
        assert turns.share(notify.wake(1), 1)
    assert not turns.share(first, 1)  # still among the last WAKES
    assert turns.share(notify.wake(1), 1)
    assert turns.share(first, 1)  # its slot went to the newest: heard as new


def _share_in_child(turns: idle.LookTurns, payload: str, out: object) -> None:
    out.value = turns.share(payload, 1)  # type: ignore[attr-defined]


def test_a_forked_process_shares_the_wake_ups() -> None:
    turns = idle.LookTurns()
    payload = notify.wake(1)
    assert turns.share(payload, 1)
    ctx = multiprocessing.get_context("fork")
    seen = ctx.Value("b", 1)
    child = ctx.Process(target=_share_in_child, args=(turns, payload, seen))
    child.start()
    child.join()
    assert seen.value == 0  # the parent claimed it: the child waits


# -- SQLite's file watch -------------------------------------------------------------------------


@pytest.mark.parametrize("journal", ["wal", "delete"])
def test_a_commit_by_another_connection_wakes_a_waiting_one(tmp_path: Path, journal: str) -> None:
    path = str(tmp_path / "db.sqlite3")
    db = sqlite3.connect(path, isolation_level=None)
    db.execute(f"PRAGMA journal_mode={journal}")
    db.execute("CREATE TABLE t (x INTEGER)")
    watch = filewatch.FileWatch()
    assert watch.wait(path, 0.01) is True  # the first look always says: look
    assert watch.wait(path, 0.05) is False  # nothing was committed since

    def commit_soon() -> None:
        writer = sqlite3.connect(path, isolation_level=None)
        threading.Event().wait(0.05)
        writer.execute("INSERT INTO t VALUES (1)")
        writer.close()

    writer = threading.Thread(target=commit_soon)
    writer.start()
    assert watch.wait(path, 10.0) is True
    writer.join()
    db.close()


def test_a_write_that_changes_nothing_does_not_wake(tmp_path: Path) -> None:
    path = str(tmp_path / "db.sqlite3")
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=wal")
    db.execute("CREATE TABLE t (x INTEGER)")
    watch = filewatch.FileWatch()
    watch.wait(path, 0.01)
    db.execute("UPDATE t SET x = 2 WHERE x = 1")  # what an empty fetch does
    assert watch.wait(path, 0.05) is False
    db.close()


@pytest.mark.parametrize(("name", "expected"), [
    (":memory:", None), ("", None), ("file:memorydb_default?mode=memory&cache=shared", None),
    ("/srv/app/db.sqlite3", "/srv/app/db.sqlite3"),
    ("file:/srv/db.sqlite3?mode=rw", "/srv/db.sqlite3"),
])
def test_the_database_file_of_a_connection(name: str, expected: str | None) -> None:
    assert filewatch.database_file({"NAME": name}) == expected
