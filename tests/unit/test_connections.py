"""The database connections a worker checks after every task (``process/connections.py``)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from django import db

from django_tasks.process import connections


def _in_a_thread(work: Callable[[], object]) -> object:
    """``work()`` run in a thread of its own (its own connections), and what it returned."""
    out: list[object] = []
    thread = threading.Thread(target=lambda: out.append(work()))
    thread.start()
    thread.join(30)
    assert out, "the thread failed"
    return out[0]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("checked_before", [False, True])
def test_a_transaction_a_task_left_open_is_undone(checked_before: bool) -> None:
    """Also on a connection the thread opened after a check (``checked_before``): the list
    of a thread's connections is remembered between checks, and Django's
    ``connection_created`` drops it."""
    def work() -> bool:
        if checked_before:
            connections.refresh()  # before this thread has any connection
        conn = db.connections["default"]
        conn.ensure_connection()
        conn.set_autocommit(False)  # a task that began a transaction and never ended it
        connections.refresh()
        try:
            return conn.get_autocommit()
        finally:
            conn.close()

    assert _in_a_thread(work) is True


@pytest.mark.django_db(transaction=True)
def test_a_connection_that_saw_an_error_and_died_is_closed() -> None:
    def work() -> object:
        conn = db.connections["default"]
        conn.ensure_connection()
        connections.refresh()
        conn.errors_occurred = True
        conn.is_usable = lambda: False  # type: ignore[method-assign]  # the server dropped it
        connections.refresh()
        return conn.connection

    assert _in_a_thread(work) is None
