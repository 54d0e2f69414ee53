"""Wake-ups on PostgreSQL (LISTEN/NOTIFY): an idle consumer and a waiting ``get()`` are woken
by the commit that concerns them. On other databases ``wait()`` says it cannot (None) and
callers poll; those runs check that.

Each publish here is made from another thread, on a connection of its own, and committed, as
a web request would; a timeout long enough never to run out is used, so that a missed
notification shows as ``False`` (timed out) rather than as a slow test.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from django.db import ProgrammingError, connection, connections, transaction
from django.test.utils import CaptureQueriesContext

from django_tasks import notify
from django_tasks import result as result_module
from django_tasks.brokers.base import WAKE_AHEAD_SECONDS
from django_tasks.brokers.database import DatabaseBroker
from django_tasks.group_result import GroupResult
from django_tasks.message import Message
from django_tasks.publishing import publish
from django_tasks.result import AsyncResult, TaskOutcome
from django_tasks.results import database as database_module
from django_tasks.results.database import DatabaseResultStore

pytestmark = pytest.mark.django_db(transaction=True)
ON_POSTGRES = connection.vendor == "postgresql"
NEVER = 30.0


@pytest.fixture
def broker() -> Iterator[DatabaseBroker]:
    broker = DatabaseBroker("django://")
    yield broker
    notify.unlisten(connection, notify.QUEUE_CHANNEL)


def elsewhere(action: Callable[[], object]) -> None:
    """Run ``action`` in another thread, with its own connection, and wait for it."""
    def run() -> None:
        try:
            action()
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()


def message(eta: dt.datetime | None = None) -> Message:
    return Message(id=f"n-{threading.get_ident()}-{eta}", task="unit.notify.t", eta=eta)


def test_without_postgresql_callers_are_told_to_poll(broker: DatabaseBroker) -> None:
    if ON_POSTGRES:
        assert broker.wait(["default"], 0.01) is True  # it listens now
    elif connection.vendor == "sqlite":  # the broker watches the database's files
        assert broker.wait(["default"], 0.01) is True
        assert DatabaseResultStore("django://").wait(0.01) is None
    else:
        assert broker.wait(["default"], 0.01) is None
        assert DatabaseResultStore("django://").wait(0.01) is None


def test_a_commit_elsewhere_wakes_a_waiting_consumer(broker: DatabaseBroker) -> None:
    """SQLite by its files, PostgreSQL by NOTIFY; elsewhere the consumer is told to poll."""
    if connection.vendor not in ("sqlite", "postgresql"):
        assert broker.wait(["default"], 0.01) is None
        return
    broker.wait(["default"], 0.01)  # the first look takes the files' stamp, or LISTENs
    assert broker.wait(["default"], 0.05) is False
    elsewhere(lambda: DatabaseBroker("django://").publish([message()]))
    assert broker.wait(["default"], NEVER) is True


def test_inside_a_transaction_nobody_waits(broker: DatabaseBroker) -> None:
    with transaction.atomic():
        assert broker.wait(["default"], 0.01) is None


class TestOnPostgreSQL:
    """On another database each of these checks only that callers are told to poll."""

    @pytest.fixture
    def postgres(self, broker: DatabaseBroker) -> bool:
        if not ON_POSTGRES:
            expected = True if connection.vendor == "sqlite" else None  # SQLite's files
            assert broker.wait(["default"], 0.01) is expected
            assert DatabaseResultStore("django://").wait(0.01) is None
        return ON_POSTGRES

    def test_the_first_wait_listens_and_says_look_again(self, postgres: bool,
                                                        broker: DatabaseBroker) -> None:
        if not postgres:
            return
        assert broker.wait(["default"], NEVER) is True
        assert broker.wait(["default"], 0.05) is False  # nothing published since

    def test_a_committed_publish_wakes_an_idle_consumer(self, postgres: bool,
                                                        broker: DatabaseBroker) -> None:
        if not postgres:
            return
        broker.wait(["default"], 0.01)
        elsewhere(lambda: DatabaseBroker("django://").publish([message()]))
        assert broker.wait(["default"], NEVER) is True

    def test_a_publish_says_how_many_due_messages_it_queued(self, postgres: bool,
                                                            broker: DatabaseBroker) -> None:
        """Under a key of its own, so that a worker's idle processes can share it out; a
        refused wake-up does not wake, an accepted one does."""
        if not postgres:
            return
        later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
        batch = [Message(id=f"count-{n}", task="unit.notify.t") for n in range(3)]
        heard: list[str] = []

        def hear(payload: str) -> bool:
            heard.append(payload)
            return len(heard) > 1

        broker.wait(["default"], 0.01)
        elsewhere(lambda: DatabaseBroker("django://").publish([*batch, message(eta=later)]))
        elsewhere(lambda: DatabaseBroker("django://").publish_with_pending(
            [Message(id="count-pending", task="unit.notify.t")]))
        assert broker.wait(["default"], NEVER, accept=hear) is True
        assert [notify.read_wake(p)[1] for p in heard] == [3, 1]  # type: ignore[index]
        assert heard[0] != heard[1]
        assert broker.wait(["default"], 0.1, accept=hear) is False  # both heard
        elsewhere(lambda: DatabaseBroker("django://").publish([message()]))
        assert broker.wait(["default"], 0.2, accept=lambda payload: False) is False

    def test_a_wake_up_heard_during_another_query_is_kept(self, postgres: bool,
                                                          broker: DatabaseBroker) -> None:
        if not postgres:
            return
        broker.wait(["default"], 0.01)
        elsewhere(lambda: DatabaseBroker("django://").publish([message()]))
        with connection.cursor() as cursor:  # reads the notification off the socket
            cursor.execute("SELECT 1")
        assert broker.wait(["default"], NEVER) is True

    def test_a_rollback_wakes_nobody(self, postgres: bool,
                                     broker: DatabaseBroker) -> None:
        if not postgres:
            return
        broker.wait(["default"], 0.01)

        def publish_and_roll_back() -> None:
            with pytest.raises(RuntimeError), transaction.atomic():
                DatabaseBroker("django://").publish([message()])
                raise RuntimeError

        elsewhere(publish_and_roll_back)
        assert broker.wait(["default"], 0.2) is False

    def test_a_message_delayed_by_more_than_a_second_wakes_nobody(
            self, postgres: bool, broker: DatabaseBroker) -> None:
        if not postgres:
            return
        broker.wait(["default"], 0.01)
        later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
        elsewhere(lambda: DatabaseBroker("django://").publish([message(eta=later)]))
        assert broker.wait(["default"], 0.2) is False

    def test_a_message_due_within_a_second_wakes_one_idle_consumer(
            self, postgres: bool, broker: DatabaseBroker) -> None:
        """Counting no due message: the first process to hear it looks (and asks when it
        comes due), the others do not."""
        if not postgres:
            return
        broker.wait(["default"], 0.01)
        soon = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=WAKE_AHEAD_SECONDS / 2)
        elsewhere(lambda: DatabaseBroker("django://").publish([message(eta=soon)]))
        heard: list[str] = []
        assert broker.wait(["default"], NEVER, accept=lambda p: heard.append(p) is None)
        assert notify.read_wake(heard[0])[1] == 0  # type: ignore[index]

    def test_wake_ups_heard_while_busy_cost_one_look(self, postgres: bool,
                                                     broker: DatabaseBroker) -> None:
        if not postgres:
            return
        broker.wait(["default"], 0.01)
        def publish_twenty() -> None:
            for n in range(20):  # one transaction, one notification each
                DatabaseBroker("django://").publish(
                    [Message(id=f"busy-{n}", task="unit.notify.t")])

        elsewhere(publish_twenty)
        with connection.cursor() as cursor:  # busy: the notifications wait in the driver
            cursor.execute("SELECT 1")
        assert broker.wait(["default"], NEVER) is True
        assert broker.wait(["default"], 0.1) is False  # all twenty answered by one look

    def test_a_busy_consumer_stops_listening(self, postgres: bool,
                                             broker: DatabaseBroker) -> None:
        if not postgres:
            return
        broker.wait(["default"], 0.01)
        elsewhere(lambda: DatabaseBroker("django://").publish([message()]))
        assert len(broker.fetch(["default"], "w1", 10, 30)) == 1
        broker.stop_waiting()  # what a consumer busy for over BUSY_SECONDS does
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_listening_channels()")
            assert cursor.fetchall() == []
        assert broker.wait(["default"], NEVER) is True  # listens again: look once more

    def test_outcomes_of_existing_rows_notify_in_their_own_statement(self,
                                                                     postgres: bool) -> None:
        if not postgres:
            return
        store = DatabaseResultStore("django://")
        store.create_pending([Message(id="folded", task="unit.notify.t")])
        outcome = TaskOutcome(task_id="folded", task_name="unit.notify.t", state="SUCCESS",
                              result=1, date_done=dt.datetime.now(dt.UTC))
        with CaptureQueriesContext(connection) as queries:
            store.store_outcomes([outcome])
        assert len(queries) == 1 and "pg_notify" in queries[0]["sql"]

    def test_stored_outcomes_wake_a_waiting_reader(self, postgres: bool) -> None:
        if not postgres:
            return
        store = DatabaseResultStore("django://")
        try:
            assert store.wait(NEVER) is True
            outcome = TaskOutcome(task_id="woken", task_name="unit.notify.t", state="SUCCESS",
                                  result=1, date_done=dt.datetime.now(dt.UTC))
            elsewhere(lambda: DatabaseResultStore("django://").store_outcomes([outcome]))
            assert store.wait(NEVER) is True
        finally:
            store.stop_waiting()
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_listening_channels()")
            assert cursor.fetchall() == []

    def test_a_reader_waiting_for_a_task_sleeps_through_the_outcomes_of_others(
            self, postgres: bool) -> None:
        """The notification names the tasks whose outcome is final; a non-final outcome
        (a retry) sends none."""
        if not postgres:
            return
        store = DatabaseResultStore("django://")
        store.create_pending([Message(id=i, task="unit.notify.t")
                              for i in ("mine", "other", "again")])
        try:
            assert store.wait(NEVER, ["mine"]) is True
            assert store.get("mine") is not None and listening() == ["django_tasks_result"]
            elsewhere(lambda: DatabaseResultStore("django://").store_outcomes(
                [outcome("other"), outcome("again", "RETRY")]))
            assert store.wait(0.3, ["mine"]) is False
            elsewhere(lambda: DatabaseResultStore("django://").store_outcomes(
                [outcome("other"), outcome("mine")]))
            assert store.wait(NEVER, ["mine"]) is True
        finally:
            store.stop_waiting()
        assert listening() == []

    def test_listen_and_unlisten_ride_on_the_reads_of_a_waiting_reader(
            self, postgres: bool) -> None:
        """``AsyncResult.get()`` of a task that ends while it waits: three statements in all,
        the read before waiting, LISTEN with the next read, UNLISTEN with the last."""
        if not postgres:
            return
        store = DatabaseResultStore("django://")
        store.create_pending([Message(id="awaited", task="unit.notify.t")])
        statements = statements_of_get(AsyncResult("awaited"))
        assert len(statements) == 3, statements
        assert re.match(READ, statements[0]), statements
        assert re.match(f"LISTEN django_tasks_result; {READ}", statements[1]), statements
        assert re.match(f"UNLISTEN django_tasks_result; {READ}", statements[2]), statements
        assert listening() == []

    def test_a_result_asked_for_at_once_after_its_publish_listens_with_its_first_read(
            self, postgres: bool, monkeypatch: pytest.MonkeyPatch) -> None:
        """``delay().get()``: no worker is likely to have answered yet, so there is no read
        of its own before the wait: LISTEN with the first read, UNLISTEN with the last."""
        if not postgres:
            return
        monkeypatch.setattr(result_module, "FRESH_SECONDS", NEVER)  # however slow this test
        statements = statements_of_get(publish(Message(id="at-once", task="unit.notify.t")))
        assert len(statements) == 2, statements
        assert re.match(f"LISTEN django_tasks_result; {READ}", statements[0]), statements
        assert re.match(f"UNLISTEN django_tasks_result; {READ}", statements[1]), statements
        assert listening() == []

    def test_a_result_published_earlier_or_already_done_is_read_first(
            self, postgres: bool) -> None:
        """Asked for later than ``FRESH_SECONDS`` after its publish, a finished task is read
        once; one found finished by a first read that listened stops listening at once."""
        if not postgres:
            return
        DatabaseResultStore("django://").store_outcomes([outcome("done-1"), outcome("done-2")])
        with CaptureQueriesContext(connection) as queries:
            later = AsyncResult("done-1", published_at=time.monotonic() - 1.0)
            assert later.get(timeout=NEVER) == 1
        assert len(queries) == 1 and "LISTEN" not in queries[0]["sql"]
        with CaptureQueriesContext(connection) as queries:
            assert AsyncResult("done-2", published_at=time.monotonic()).get(timeout=NEVER) == 1
        assert [q["sql"].split(";")[0] for q in queries][1:] == \
            ["UNLISTEN django_tasks_result"]
        assert listening() == []

    def test_a_batch_too_big_to_name_wakes_every_reader(self, postgres: bool) -> None:
        if not postgres:
            return
        store = DatabaseResultStore("django://")
        ids = [f"{i:04}-" + "x" * 200 for i in range(40)]  # 8,000 bytes of names
        store.create_pending([Message(id=i, task="unit.notify.t") for i in ids])
        try:
            assert store.wait(NEVER, ["unrelated"]) is True
            store.get("unrelated")
            elsewhere(lambda: DatabaseResultStore("django://").store_outcomes(
                [outcome(i) for i in ids]))
            assert store.wait(NEVER, ["unrelated"]) is True
        finally:
            store.stop_waiting()
        assert listening() == []


    @pytest.mark.usefixtures("database_tasks")
    def test_a_group_waiting_for_its_members_sleeps_through_the_outcomes_of_others(
            self, postgres: bool) -> None:
        """``GroupResult.get()`` looks again when a member's outcome is stored, not whenever
        any batch is: its first look, the look after it starts listening, and one after
        each member's outcome (the interval, a look at the latest, set long)."""
        if not postgres:
            return
        DatabaseResultStore("django://").create_pending(
            [Message(id=i, task="unit.notify.t") for i in ("g1", "g2", "other")])
        group = GroupResult("g", [AsyncResult("g1"), AsyncResult("g2")])

        def later() -> None:
            for pause, task_id in ((0.2, "other"), (0.3, "g1"), (0.3, "g2")):
                time.sleep(pause)
                elsewhere(lambda task_id=task_id: DatabaseResultStore(  # type: ignore[misc]
                    "django://").store_outcomes([outcome(task_id)]))

        thread = threading.Thread(target=later)
        with CaptureQueriesContext(connection) as queries:
            thread.start()
            assert group.get(timeout=NEVER, interval=NEVER) == [1, 1]
        thread.join()
        looks = [q["sql"] for q in queries if "django_tasks_taskresult" in q["sql"]]
        assert len(looks) == 4, looks
        assert listening() == []

    def test_a_read_that_fails_keeps_its_listen_for_the_next(
            self, postgres: bool, monkeypatch: pytest.MonkeyPatch) -> None:
        """The failed query took its LISTEN down with it: the next read sends it again."""
        if not postgres:
            return
        store = DatabaseResultStore("django://")
        try:
            assert store.wait(NEVER, ["later"]) is True
            with monkeypatch.context() as patched:
                patched.setattr(database_module, "_META_FIELDS", ("no_such_column",))
                with pytest.raises(ProgrammingError):
                    store.get("later")
            assert listening() == []
            assert store.get("later") is None
            assert listening() == ["django_tasks_result"]
        finally:
            store.stop_waiting()
        assert listening() == []

def outcome(task_id: str, state: str = "SUCCESS") -> TaskOutcome:
    return TaskOutcome(task_id=task_id, task_name="unit.notify.t", state=state, result=1,
                       date_done=dt.datetime.now(dt.UTC))


#: A result row's read (prepared on the connection from its third run: prepared.py).
READ = r"(SELECT|PREPARE \w+ AS SELECT|EXECUTE) "


def statements_of_get(result: AsyncResult) -> list[str]:
    """The statements of ``result.get()`` for a task whose outcome another connection
    stores 0.3 s later, each up to its FROM."""
    finished = threading.Timer(0.3, elsewhere, [lambda: DatabaseResultStore(
        "django://").store_outcomes([outcome(result.id)])])
    with CaptureQueriesContext(connection) as queries:
        finished.start()
        assert result.get(timeout=NEVER) == 1
    finished.join()
    return [q["sql"].split(" FROM ")[0] for q in queries]


def listening() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_listening_channels()")
        return [row[0] for row in cursor.fetchall()]
