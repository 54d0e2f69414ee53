"""The statements that store outcomes on PostgreSQL: a batch's rows given as one JSON array
(``json_update``), and a single outcome given as plain parameters (``one_update``).

Each writes the rows that exist and are not final, and wakes waiting readers in the same
round trip: one notification, sent at the commit, that names the tasks whose outcome is
final (``notify.py``).
"""

from __future__ import annotations

from typing import Any

from .. import durability, states
from ..models import TaskResult

#: The columns an outcome writes (arguments were written at enqueue; an outcome only adds
#: them where no row existed), in the order of ``one_update``'s parameters.
OUTCOME_FIELDS = ["state", "result", "traceback", "worker", "attempts", "retries",
                  "started_at", "date_done"]

#: A notification's payload is shorter than this many bytes (PostgreSQL's limit is 8000).
PAYLOAD = 7900

#: The final states, as SQL literals.
_FINAL = ", ".join(f"'{state}'" for state in sorted(states.READY_STATES))

#: Up to this many ids in a batch, PostgreSQL is told how many (it probes the task id index
#: for so few rows); above, it is not (``json_update``).
SIZE_SHOWN = 16


def json_update(connection: Any, size_shown: bool, also: str = "",
                 whole: bool = False, ack: str = "", lazy: bool = False) -> str:
    """PostgreSQL: the ``UPDATE`` of outcome columns, from rows given as one JSON array, of
    the rows that exist and are not final; it returns their ids and wakes waiting readers
    in the same round trip: one notification, sent at the commit, that names the tasks
    whose outcome is final, one per line (``notify.py``), or is empty when their names do
    not fit in a payload (readers then look).

    The ids are given again as an array, for the planner: it guesses that a JSON array holds
    100 rows, and may then read the whole table. Up to ``SIZE_SHOWN`` rows (``size_shown``)
    the array is a parameter, whose length it sees; above, an array it cannot see into,
    built from the JSON. Told a batch's size, it reads the whole table once a batch is a
    percent of it (200 of 20,000 rows: 10-14 ms against 4-6 ms through the index), because
    it prices each index probe as a read from disk; hidden, the size costs 0.1 ms more for
    one row.

    ``also``, a data-modifying statement with one parameter, runs in the same statement (a
    ``WITH`` of its own: PostgreSQL runs it whether or not the query reads it).

    ``whole``: one more parameter, the number of rows; unless the ``UPDATE`` wrote that many,
    the statement fails with a division by zero (SQLSTATE 22012), undoing all of it. The
    division is read by the query, so the planner cannot drop it. ``ack``: a statement
    returning a row per message acked, run first as a ``WITH`` of its own; with ``whole``,
    one more parameter, the number of messages it must ack.

    ``lazy`` (with ``whole``, outside a transaction): the statement's commit does not wait
    for the disk (``synchronous_commit`` off for its own transaction, read by the query);
    the caller makes it durable with :meth:`DatabaseResultStore.flush` before it relies on
    it."""
    table = connection.ops.quote_name(TaskResult._meta.db_table)
    return (
        (f"WITH a AS ({ack}), " if ack else "WITH ")
        + "v AS (SELECT r->>0 AS task_id, r->>1 AS state, r->>2 AS result, "
        "r->>3 AS traceback, r->>4 AS worker, (r->>5)::integer AS attempts, "
        "(r->>6)::integer AS retries, (r->>7)::timestamptz AS started_at, "
        "(r->>8)::timestamptz AS date_done FROM jsonb_array_elements(%s::jsonb) AS r), "
        f"u AS (UPDATE {table} SET state = v.state, result = v.result, "
        "traceback = v.traceback, worker = v.worker, attempts = v.attempts, "
        "retries = v.retries, started_at = v.started_at, date_done = v.date_done "
        f"FROM v WHERE {table}.task_id = v.task_id AND {table}.state NOT IN ({_FINAL}) "
        f"AND {table}.task_id = "
        + ("ANY(%s::text[]) " if size_shown else "ANY(ARRAY(SELECT task_id FROM v)) ") +
        f"RETURNING {table}.task_id, {table}.state)" + (f", c AS ({also})" if also else "")
        + f", n AS (SELECT pg_notify(%s, CASE WHEN sum(octet_length(task_id) + 1) < "
        f"{PAYLOAD} THEN string_agg(task_id, E'\\n') ELSE '' END) FROM u "
        f"WHERE state IN ({_FINAL}) HAVING count(*) > 0) "
        + ("SELECT u.task_id, g.whole FROM (SELECT 1 / CASE WHEN (SELECT count(*) FROM u) "
           "= %s" + (" AND (SELECT count(*) FROM a) = %s" if ack else "") + " THEN 1 ELSE 0 "
           "END AS whole" + (f", {durability.LAZY} AS lazy" if lazy else "")
           + ") AS g LEFT JOIN u ON true LEFT JOIN n ON true" if whole
           else "SELECT u.task_id FROM u LEFT JOIN n ON true"))


def one_update(connection: Any, *, also: str = "", ack: str = "",
               lazy: bool = False) -> str:
    """:func:`json_update` with ``whole`` for a single outcome (the batch of a worker that
    answers one reader at a time), given as parameters: the outcome columns in
    ``OUTCOME_FIELDS``, the task id, the channel. The JSON array's statement took 0.35 ms a
    call from a client here where this one took 0.2: the planner and the executor had the
    array and its casts to go through, for one row.

    It returns a row when the outcome was written. Without ``ack`` and ``also`` it returns
    none when the row is missing or final, having written nothing; with either, a data-
    modifying ``WITH`` that runs whether or not the row was written, it fails with a division
    by zero then (one more parameter with ``ack``: the number of messages it must ack), as
    ``json_update`` does."""
    table = connection.ops.quote_name(TaskResult._meta.db_table)
    written = (f"u AS (UPDATE {table} SET "
               + ", ".join(f"{column} = %s" for column in OUTCOME_FIELDS)
               + f" WHERE task_id = %s AND state NOT IN ({_FINAL}) RETURNING task_id, state)")
    woken = f"CASE WHEN u.state IN ({_FINAL}) THEN pg_notify(%s, u.task_id) END"
    lazily = f", {durability.LAZY}" if lazy else ""
    if not (ack or also):
        return f"WITH {written} SELECT u.task_id, {woken}{lazily} FROM u"
    return ((f"WITH a AS ({ack}), " if ack else "WITH ") + written
            + (f", c AS ({also})" if also else "")
            + f" SELECT u.task_id, {woken}, g.whole FROM (SELECT 1 / CASE WHEN "
            "(SELECT count(*) FROM u) = 1" + (" AND (SELECT count(*) FROM a) = %s" if ack else "")
            + f" THEN 1 ELSE 0 END AS whole{lazily}) AS g LEFT JOIN u ON true")
