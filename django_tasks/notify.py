"""Wake-ups through PostgreSQL's LISTEN/NOTIFY, so that nobody sleeps on an idle queue.

The database broker sends a notification on ``QUEUE_CHANNEL`` with every publish of a due
message, and the database result store one on ``RESULT_CHANNEL`` with every batch of
outcomes; a notification sent in a transaction is delivered at its commit, and one that is
sent many times in a transaction is delivered once. An idle consumer waits for the first,
``AsyncResult.get()`` for the second, on the connection they already have, instead of
polling it.

A connection listens only while it waits: ``wait()`` starts listening on the first call and
the caller stops with ``unlisten()`` once it has what it waited for, so that no busy
connection collects notifications it does not read. The first ``wait()`` returns at once:
what was sent before it listened was not heard, so the caller looks again. That ``LISTEN``
rides on the caller's next look (``ahead()``: one round trip, not two), as does the
``UNLISTEN`` after a notification that named the ids the caller waits for (their outcomes
are final: the look that reads them is the last). psycopg 3.3 keeps a notification that
arrives while the connection runs another query for the next ``notifies()``; earlier
versions drop it, so with them (and with psycopg2) nobody waits.

A notification's payload is empty ("look again") or names task ids, one per line (ids are
printable, so a line break is never part of one): the result store names the tasks whose
final outcome a batch stored, when the names fit in a payload. A reader waiting for some
ids sleeps through notifications that name only others.

A publish's notification on ``QUEUE_CHANNEL`` says how many due messages it queued, under a
key of its own (``wake()``): every idle process of a worker hears it, and they share it out
(``worker/idle.py``), so that one process claims a single message instead of all of them.
Other wake-ups there (messages handed back) are empty: every process looks.

Other databases, and a connection inside a transaction (where notifications are held until
it ends), get None from ``wait()``: the caller polls as before.
"""

from __future__ import annotations

import secrets
import threading
import time
import weakref
from collections.abc import Callable, Collection
from typing import Any

QUEUE_CHANNEL = "django_tasks_queue"
RESULT_CHANNEL = "django_tasks_result"

#: The channels each raw connection listens on (or will, with its next look: ``ahead()``).
_listening: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()
#: ``LISTEN``/``UNLISTEN`` statements each raw connection sends with its next look.
_deferred: weakref.WeakKeyDictionary[Any, list[str]] = weakref.WeakKeyDictionary()
#: The separator of task ids in a payload.
SEPARATOR = "\n"
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


def notify(connection: Any, channel: str, payload: str = "") -> None:
    """Send a wake-up on ``channel`` (delivered at the commit of the open transaction)."""
    if supported(connection):
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, %s)", [channel, payload])


def wake(count: int) -> str:
    """The payload of a publish's wake-up: a key of its own (48 random bits) and ``count``,
    the due messages it queued."""
    return f"{secrets.token_hex(6)} {count}"


def read_wake(payload: str) -> tuple[int, int] | None:
    """The key and count of a ``wake()`` payload; None for any other (every process looks)."""
    key, _, count = payload.partition(" ")
    if len(key) != 12 or not count.isdigit():
        return None
    try:
        return int(key, 16), int(count)
    except ValueError:
        return None


def wait(connection: Any, channel: str, timeout: float, keys: Collection[str] = (), *,
         defer: bool = False, accept: Callable[[str], bool] | None = None) -> bool | None:
    """Wait up to ``timeout`` seconds for a notification on ``channel``: True if one came (or
    the caller must look again), False on timeout, None where waiting is not possible.

    With ``keys``, a notification that names ids and none of ``keys`` does not count.
    ``defer``: the caller's next query sends ``ahead()`` first, so ``LISTEN`` rides on it,
    and so does ``UNLISTEN`` once a notification named every key. ``accept``: a
    notification whose payload it refuses does not count (another process takes it)."""
    if not (_WAKEUPS and supported(connection)) or connection.in_atomic_block:
        return None
    connection.ensure_connection()
    raw = connection.connection
    if not callable(getattr(raw, "notifies", None)):  # psycopg2: a list, not a generator
        return None
    with _lock:
        channels = _listening.setdefault(raw, set())
        listening = channel in channels
        channels.add(channel)
        if not listening and defer:
            _deferred.setdefault(raw, []).append(f"LISTEN {channel}")
            return True
    if not listening:
        with connection.cursor() as cursor:
            cursor.execute(f"LISTEN {channel}")
        return True
    wanted = set(keys)
    deadline = time.monotonic() + timeout
    # Notifications that came while the connection did other things wait in the driver:
    # one look answers them all (a backlog would otherwise cost a look each).
    first, left = True, 0.0
    while first or (left := deadline - time.monotonic()) > 0:
        came = list(raw.notifies(timeout=0)) if first else \
            list(raw.notifies(timeout=left, stop_after=1))
        first = False
        for note in came:
            if note.channel != channel or (accept is not None and not accept(note.payload)):
                continue
            if not wanted or not note.payload:
                return True
            named = set(note.payload.split(SEPARATOR))
            if named & wanted:
                if defer and wanted <= named:  # all final: the next look is the last
                    _stop_ahead(raw, channel)
                return True
    return False


def _stop_ahead(raw: Any, channel: str) -> None:
    with _lock:
        channels = _listening.get(raw)
        if channels is not None and channel in channels:
            channels.discard(channel)
            _deferred.setdefault(raw, []).append(f"UNLISTEN {channel}")


def ahead(connection: Any) -> str:
    """The ``LISTEN``/``UNLISTEN`` statements to send before the caller's next query on
    ``connection`` ("" when none), taken: the caller sends them."""
    raw = connection.connection
    if raw is None:
        return ""
    with _lock:
        statements = _deferred.pop(raw, None)
    return "; ".join(statements) if statements else ""


def put_back(connection: Any, statements: str) -> None:
    """``ahead()``'s statements, sent with a query that failed (and so undone with it): to
    be sent again with the next one."""
    raw = connection.connection
    if statements and raw is not None:
        with _lock:
            _deferred.setdefault(raw, [])[:0] = statements.split("; ")


def _send_ahead(connection: Any) -> None:
    if statements := ahead(connection):
        with connection.cursor() as cursor:
            cursor.execute(statements)


def unlisten(connection: Any, channel: str) -> None:
    """Stop listening on ``channel`` (if this connection listens), so that notifications do
    not pile up unread while the connection is busy with other things."""
    if not supported(connection) or connection.connection is None:
        return
    raw = connection.connection
    with _lock:
        channels = _listening.get(raw)
        deferred = _deferred.get(raw, [])
        if f"LISTEN {channel}" in deferred:  # never sent: nothing to undo
            deferred.remove(f"LISTEN {channel}")
            if channels is not None:
                channels.discard(channel)
            return
        if channels is not None and channel in channels:
            channels.discard(channel)
            deferred.append(f"UNLISTEN {channel}")
            _deferred[raw] = deferred
    if not connection.in_atomic_block:  # else it takes effect with the next query's commit
        _send_ahead(connection)
