"""Wake-ups through PostgreSQL's LISTEN/NOTIFY, so that nobody sleeps on an idle queue.

The database broker sends a notification on ``QUEUE_CHANNEL`` with every publish of a due
message, and the database result store one on ``RESULT_CHANNEL`` with every batch of
outcomes; a notification sent in a transaction is delivered at its commit, and one that is
sent many times in a transaction is delivered once. An idle consumer waits for the first,
``AsyncResult.get()`` for the second, on the connection they already have, instead of
polling it.

A connection listens only while it waits: ``wait()`` issues ``LISTEN`` on the first call and
the caller stops with ``unlisten()`` once it has what it waited for, so that no busy
connection collects notifications it does not read. The first ``wait()`` after a ``LISTEN``
returns at once: what was sent before it was not heard, so the caller looks again.
psycopg 3.3 keeps a notification that arrives while the connection runs another query for
the next ``notifies()``; earlier versions drop it, so with them (and with psycopg2) nobody
waits.

Other databases, and a connection inside a transaction (where notifications are held until
it ends), get None from ``wait()``: the caller polls as before.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

QUEUE_CHANNEL = "django_tasks_queue"
RESULT_CHANNEL = "django_tasks_result"

#: The channels each raw connection listens on.
_listening: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def _psycopg_keeps_notifications() -> bool:
    try:
        import psycopg
    except ImportError:
        return False
    major, minor = (int(part) for part in psycopg.__version__.split(".")[:2])
    return (major, minor) >= (3, 3)


_WAKEUPS = _psycopg_keeps_notifications()


def supported(connection: Any) -> bool:
    return bool(connection.vendor == "postgresql")


def notify(connection: Any, channel: str) -> None:
    """Send a wake-up on ``channel`` (delivered at the commit of the open transaction)."""
    if supported(connection):
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, '')", [channel])


def wait(connection: Any, channel: str, timeout: float) -> bool | None:
    """Wait up to ``timeout`` seconds for a notification on ``channel``: True if one came (or
    the caller must look again), False on timeout, None where waiting is not possible."""
    if not (_WAKEUPS and supported(connection)) or connection.in_atomic_block:
        return None
    connection.ensure_connection()
    raw = connection.connection
    if not callable(getattr(raw, "notifies", None)):  # psycopg2: a list, not a generator
        return None
    with _lock:
        channels = _listening.setdefault(raw, set())
    if channel not in channels:
        with connection.cursor() as cursor:
            cursor.execute(f"LISTEN {channel}")
        channels.add(channel)
        return True
    # Notifications that came while the connection did other things wait in the driver:
    # one look answers them all (a backlog would otherwise cost a look each).
    if any([True for _ in raw.notifies(timeout=0)]):
        return True
    return any(True for _ in raw.notifies(timeout=timeout, stop_after=1))


def unlisten(connection: Any, channel: str) -> None:
    """Stop listening on ``channel`` (if this connection listens), so that notifications do
    not pile up unread while the connection is busy with other things."""
    if not supported(connection) or connection.connection is None:
        return
    channels = _listening.get(connection.connection)
    if not channels or channel not in channels:
        return
    channels.discard(channel)
    if connection.in_atomic_block:  # takes effect at the commit; harmless until then
        return
    with connection.cursor() as cursor:
        cursor.execute(f"UNLISTEN {channel}")
