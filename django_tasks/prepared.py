"""Prepared statements on PostgreSQL, for the statements a round trip waits on: ``delay()``
(on the database broker its message and PENDING row, on another broker its PENDING row), a
worker's claim of the messages it takes, its look for ids already final and its store of a
single outcome (``results/database.py``), and ``AsyncResult.get()``'s read of a result row (a
waiting ``get()`` makes two or three).

PostgreSQL plans every statement it is sent. Prepared on their connection, they are planned
once: in PostgreSQL's log of 300 round trips through the database broker (a 2-core machine), a
claim took 0.29 ms against 0.59 unprepared, a read 0.07 ms against 0.12; a ``delay()``, timed
by its caller, 0.48-0.61 ms against 0.58-0.69 (medians of 300, alternating). A statement is
prepared at its third run on a connection (``THRESHOLD``: one run once or twice, as on a web
request's connection that is closed at its end, costs no ``PREPARE``), in the same round trip
as that run (``PREPARE ...; EXECUTE ...``), and run by name from then on. After five runs
PostgreSQL keeps one plan made without the values when it costs no more than those made with
them, which holds for inserts, for a read by a unique key, and for the claim because its limit and
priorities are written into its text (``brokers/database.py``): given as values, the claim
kept being planned for them, and its plan without them, forced, read the whole queue table
(45-65 ms a claim with 100,000 messages queued).

Only outside a transaction, with psycopg 3's client-side binding (Django's default; with
``server_side_binding`` psycopg prepares by itself, as ``prepare_threshold`` says): a run that
fails there has done nothing, and is sent again unprepared. A statement that PostgreSQL does
not know any more (a connection pooler in transaction mode sends a client's statements to
other server connections, where its ``PREPARE`` never ran) turns preparing off for the
process, with a warning. ``TASKS_PREPARED_STATEMENTS = False`` turns it off.
"""

from __future__ import annotations

import itertools
import logging
import re
import secrets
import threading
import weakref
from collections.abc import Sequence
from typing import Any

from django.db import DatabaseError

from .conf import task_settings

logger = logging.getLogger("django_tasks.prepared")

#: A statement is prepared at its third run on a connection: one that runs once or twice (a
#: web request's connection, closed at its end) costs no ``PREPARE``.
THRESHOLD = 3
#: Statements prepared on one connection at most: a statement text built from the values of
#: a call would otherwise prepare one statement per value.
MOST = 32
#: What PostgreSQL answers for a statement it does not know (26000), and for one whose
#: cached plan no longer fits its tables (0A000: "cached plan must not change result type").
GONE = frozenset({"26000", "0A000"})
#: A process's statement names are its own, on a server session that a pooler shares, and
#: never used twice (a statement forgotten here may still be prepared on the server).
_TAG = secrets.token_hex(3)
_serial = itertools.count()
_PLACEHOLDER = re.compile(r"%%|%s|%")

#: The statements each raw connection has prepared: their text, and their name.
_names: weakref.WeakKeyDictionary[Any, dict[str, str]] = weakref.WeakKeyDictionary()
#: How often each raw connection ran each statement text not prepared yet.
_runs: weakref.WeakKeyDictionary[Any, dict[str, int]] = weakref.WeakKeyDictionary()
#: Statement texts that failed to prepare (they run unprepared).
_refused: set[str] = set()
_off = [False]
_lock = threading.Lock()


def client_side(cursor: Any) -> bool:
    """Whether the driver binds parameters into the text (psycopg's ``ClientCursor``, what
    Django uses unless ``server_side_binding`` is on): only then may one ``execute()`` send
    several statements with parameters."""
    try:
        from psycopg import ClientCursor
    except ImportError:
        return False
    return isinstance(cursor.cursor, ClientCursor)


def execute(cursor: Any, sql: str, params: Sequence[Any], ahead: str = "") -> None:
    """Run ``sql`` with ``params`` on ``cursor`` (a Django cursor), prepared where it can be,
    after ``ahead`` (statements without parameters, separated by ``;``) in the same round
    trip where the driver allows it; the cursor is left on the result of ``sql``."""
    connection = cursor.db
    name, prepare = _plan(cursor, sql, len(params))
    if name is None:
        _plain(cursor, sql, params, ahead)
        return
    head = [s for s in ahead.split(";") if s.strip()] + ([prepare] if prepare else [])
    run = f"EXECUTE {name}({', '.join(['%s'] * len(params))})" if params else f"EXECUTE {name}"
    try:
        cursor.execute("; ".join([*head, run]), params)
    except DatabaseError as exc:
        if not _failed(connection, exc, fresh=bool(prepare)):
            raise
        _plain(cursor, sql, params, ahead)
        if prepare:
            _refused.add(sql)  # the statement itself runs: it is its preparing that fails
        return
    for _ in head:
        cursor.nextset()
    if prepare:
        with _lock:
            _names.setdefault(connection.connection, {})[sql] = name


def _plan(cursor: Any, sql: str, count: int) -> tuple[str | None, str]:
    """The name to run ``sql`` by and, if it is not prepared on this connection yet, the
    ``PREPARE`` to send first; (None, "") when it runs unprepared."""
    connection = cursor.db
    if (_off[0] or connection.vendor != "postgresql" or connection.in_atomic_block
            or sql in _refused or not task_settings.PREPARED_STATEMENTS
            or connection.connection is None or not client_side(cursor)):
        return None, ""
    with _lock:
        names = _names.setdefault(connection.connection, {})
        name = names.get(sql)
        if name is not None:
            return name, ""
        runs = _runs.setdefault(connection.connection, {})
        if sql not in runs and len(runs) >= 4 * MOST:
            return None, ""  # texts enough are counted: the rest run unprepared
        runs[sql] = runs.get(sql, 0) + 1
        if runs[sql] < THRESHOLD or len(names) >= MOST:
            return None, ""
        name = f"django_tasks_{_TAG}_{next(_serial)}"
    numbered = _numbered(sql, count)
    if numbered is None:
        _refused.add(sql)
        return None, ""
    return name, f"PREPARE {name} AS {numbered}"


def _numbered(sql: str, count: int) -> str | None:
    """``sql`` with its ``%s`` placeholders numbered (``$1``, ``$2``, ...) and ``%%`` kept
    (the driver binds the text that holds it); None unless it has ``count`` of them and no
    other ``%``."""
    seen = 0

    def number(match: re.Match[str]) -> str:
        nonlocal seen
        if match.group() == "%%":
            return "%%"
        if match.group() != "%s":
            raise ValueError(match.group())
        seen += 1
        return f"${seen}"
    try:
        numbered = _PLACEHOLDER.sub(number, sql)
    except ValueError:
        return None
    return numbered if seen == count else None


def _failed(connection: Any, exc: DatabaseError, *, fresh: bool) -> bool:
    """After a prepared run failed: whether to run it again unprepared. A run that prepared
    the statement (``fresh``) is, whatever failed (if the statement itself fails, it fails
    again unprepared); a run by name, when PostgreSQL no longer knows the statement or its
    plan (``GONE``): the connection's statements are forgotten, and preparing is turned off
    for good when the statement is unknown (a connection pooler in between)."""
    code = getattr(exc.__cause__, "sqlstate", None)
    if fresh:
        return True
    if code not in GONE:
        return False
    raw = connection.connection
    if raw is not None:
        with _lock:
            _names.pop(raw, None)
    if code == "26000" and not _off[0]:
        _off[0] = True
        logger.warning(
            "PostgreSQL does not know a statement this process prepared on its connection "
            "(a connection pooler in transaction mode?): this process no longer prepares "
            "statements. Set TASKS_PREPARED_STATEMENTS = False behind such a pooler.")
    return True


def _plain(cursor: Any, sql: str, params: Sequence[Any], ahead: str) -> None:
    if ahead and client_side(cursor):  # one round trip
        cursor.execute(f"{ahead}; {sql}", params)
        for _ in ahead.split(";"):
            cursor.nextset()
        return
    if ahead:
        cursor.execute(ahead)
    cursor.execute(sql, params)
