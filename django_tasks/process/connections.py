"""Database connections around tasks, handled the way Django handles them around requests.

A worker keeps its connections open between tasks (reconnecting for every batch would cost
more than the work), but never hands a task a connection the server has dropped: a
connection that saw an error, or that sat idle, is checked before use and replaced if dead.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created

IDLE_CHECK_SECONDS = 1.0
_last_used = 0.0
_seen = threading.local()


def _initialized() -> Sequence[BaseDatabaseWrapper]:
    """This thread's initialized connections, as ``connections.all(initialized_only=True)``
    lists them, remembered until this thread opens a connection (Django's handler reads a
    thread-critical ``Local`` twice an alias, which costs more than the checks that follow,
    after every task). A wrapper the list misses has never connected: nothing to check."""
    known: Sequence[BaseDatabaseWrapper] | None = getattr(_seen, "connections", None)
    if known is None:
        known = _seen.connections = connections.all(initialized_only=True)
    return known


def _forget(**kwargs: Any) -> None:
    """A connection opened in this thread: list its connections again at the next check."""
    _seen.connections = None


connection_created.connect(_forget, weak=False, dispatch_uid="django_tasks.connections")


def refresh() -> None:
    """Close connections that errored or went stale, so the next query reconnects."""
    global _last_used
    now = time.monotonic()
    idle = now - _last_used > IDLE_CHECK_SECONDS
    _last_used = now
    for conn in _initialized():
        if conn.connection is None or conn.in_atomic_block:
            continue
        if conn.errors_occurred or idle:
            if not conn.is_usable():
                conn.close()
                continue
            conn.errors_occurred = False
        if not conn.autocommit:  # a task left a transaction open: undo it
            conn.rollback()
            conn.set_autocommit(True)


def close_all() -> None:
    """Close every connection (before ``fork``, after a database error, at exit)."""
    for conn in connections.all(initialized_only=True):
        try:
            conn.close()
        except Exception:  # noqa: BLE001 - a dead connection may fail to close; drop it
            conn.connection = None
