"""The result store in the project's database (``django://``, ``django://ALIAS``)."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Collection, Sequence
from dataclasses import replace
from typing import Any

from django.db import DataError, connections, transaction

from .. import clock, durability, masking, notify, prepared, serialization, states
from ..conf import database_alias
from ..message import Message
from ..models import TaskResult
from ..result import ResultMeta, TaskOutcome
from ..serialization import storable_text
from . import counters
from .base import ResultStore
from .pg_outcomes import OUTCOME_FIELDS, SIZE_SHOWN, json_update, one_update

_BATCH = 500
#: The columns a reader's ``get()`` reads, in ``ResultMeta``'s order.
_META_FIELDS = ("state", "result", "traceback", "task_name", "date_done", "queue", "worker",
                "retries", "root_id", "parent_id", "group_id")


def _now() -> dt.datetime:
    return clock.now()


def _result_text(outcome: TaskOutcome) -> str | None:
    return None if outcome.result is None else serialization.dumps(outcome.result)


class DatabaseResultStore(ResultStore):
    def __init__(self, url: str = "django://") -> None:
        super().__init__(url)
        self.alias = database_alias(url)
        self.database_alias = self.alias
        # .written: a lazy write this thread has not flushed; .counts: the runs it counted;
        # .kept: the runs of flushed batches not yet written (counters.Kept)
        self._lazy = threading.local()

    @property
    def _rows(self) -> Any:
        return TaskResult.objects.using(self.alias)

    def create_pending(self, messages: Sequence[Message], *, durable: bool = True) -> None:
        """One plain INSERT per batch: outside a transaction it commits by itself (one
        round trip, where ``bulk_create`` would add BEGIN and COMMIT). On PostgreSQL a
        batch of ``COPY_FROM`` or more is copied in, one statement too; and rows that need
        not be ``durable``, written outside a transaction, are committed without waiting
        for the disk (``synchronous_commit`` off for that statement alone): visible at
        once, on disk a fraction of a second later."""
        connection = connections[self.alias]
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql" and len(messages) >= COPY_FROM:
                copy_pending(cursor, messages, _now())
                return
            fast = (connection.vendor == "postgresql" and not durable
                    and not connection.in_atomic_block)
            for start in range(0, len(messages), _BATCH):
                chunk = messages[start:start + _BATCH]
                prepared.execute(cursor, *(
                    pending_insert_json(connection, chunk, commit_async=True)
                    if fast and len(chunk) > 1 else
                    pending_insert(connection, chunk, commit_async=fast)))

    def create_missing(self, messages: Sequence[Message]) -> None:
        """One INSERT for the batch; rows that exist are left as they are. On PostgreSQL,
        outside a transaction, one statement that commits without waiting for the disk
        (``create_pending``'s, rows that exist skipped): the worker writes these just
        before it runs their tasks, and the flush after their outcomes puts them on disk;
        a row lost in a crash before that is written again when its message runs again.
        In a round trip on Redis with ``TASKS_STORE_PENDING = False``, the ``BEGIN``,
        ``INSERT`` and ``COMMIT`` that waited for the disk took 0.8-0.9 ms."""
        if not messages:
            return
        connection = connections[self.alias]
        if connection.vendor == "postgresql" and not connection.in_atomic_block:
            with connection.cursor() as cursor:
                for start in range(0, len(messages), _BATCH):
                    chunk = messages[start:start + _BATCH]
                    build = pending_insert_json if len(chunk) > 1 else pending_insert
                    prepared.execute(cursor, *build(connection, chunk, commit_async=True,
                                                    skip_existing=True))
            return
        now = _now()
        self._rows.bulk_create(_pending_rows(messages, now), batch_size=_BATCH,
                               ignore_conflicts=True)

    def _row(self, o: TaskOutcome, now: dt.datetime) -> TaskResult:
        args, kwargs = masking.stored(o.task_name, o.args, o.kwargs or {})
        return TaskResult(
            task_id=o.task_id, task_name=o.task_name, state=o.state,
            args=args, kwargs=kwargs,
            result=_result_text(o), traceback=storable_text(o.traceback), queue=o.queue,
            worker=o.worker, attempts=o.attempts, retries=o.retries, started_at=o.started_at,
            date_done=o.date_done, created_at=now, root_id=o.root_id, parent_id=o.parent_id,
            group_id=o.group_id,
        )

    def _insert_missing(self, outcomes: Sequence[TaskOutcome]) -> None:
        """Insert rows for ids that have none; an id that has one (final or not) is skipped."""
        if outcomes:
            now = _now()
            self._rows.bulk_create([self._row(o, now) for o in outcomes], batch_size=_BATCH,
                                   ignore_conflicts=True)

    def mark_started(self, outcomes: Sequence[TaskOutcome]) -> None:
        missing = []
        for o in outcomes:
            updated = self._rows.filter(task_id=o.task_id).exclude(
                state__in=states.READY_STATES).update(
                state=states.STARTED, worker=o.worker, attempts=o.attempts,
                retries=o.retries, started_at=o.started_at)
            if not updated:
                missing.append(replace(o, state=states.STARTED, result=None, date_done=None))
        self._insert_missing(missing)

    def store_outcomes(self, outcomes: Sequence[TaskOutcome]) -> None:
        self._store(outcomes)

    def _store(self, outcomes: Sequence[TaskOutcome],
               also: tuple[str, str] | None = None) -> None:
        """``also``: on PostgreSQL, a statement with one parameter that the first chunk's
        ``UPDATE`` runs too (``store_and_count``)."""
        if not outcomes:
            return
        latest = list({o.task_id: o for o in outcomes}.values())  # one write per id
        connection = connections[self.alias]
        vendor = connection.vendor
        told = vendor == "postgresql"  # each UPDATE notifies waiting readers itself
        for start in range(0, len(latest), _BATCH):
            chunk = latest[start:start + _BATCH]
            if vendor == "postgresql":
                updated = self._update_returning_json(connection, chunk, also)
                also = None
            elif vendor == "sqlite":
                updated = self._update_returning(chunk)
            else:
                updated = self._update_locked(chunk)
            missing = [o for o in chunk if o.task_id not in updated]
            self._insert_missing(missing)
            told = told and bool(updated) and not missing
        if not told:
            notify.notify(connections[self.alias], notify.RESULT_CHANNEL)

    def count_outcomes(self, outcomes: Sequence[TaskOutcome]) -> None:
        counters.record(self.alias, outcomes, _now())

    def store_and_count(self, outcomes: Sequence[TaskOutcome],
                        counted: Sequence[TaskOutcome], *, lazy: bool = False) -> None:
        """On PostgreSQL the counters' upsert rides in the outcomes' ``UPDATE`` as one more
        data-modifying ``WITH``: a statement and a round trip less per batch (0.1-0.2 ms).
        Outside a transaction it is :meth:`store_alone`'s one statement where it can be
        (``lazy`` as there)."""
        connection = connections[self.alias]
        if connection.vendor != "postgresql" or not outcomes or not counted:
            super().store_and_count(outcomes, counted)
            return
        latest = list({o.task_id: o for o in outcomes}.values())  # one write per id
        rows = counters.tally(counted, _now())
        if self._alone(connection, latest, rows, lazy=lazy):
            return
        with transaction.atomic(using=self.alias, savepoint=False):
            self._store(latest, counters.json_upsert(self.alias, rows))

    def store_alone(self, outcomes: Sequence[TaskOutcome], counted: Sequence[TaskOutcome],
                    ack: tuple[str, list[Any]] | None = None, *, lazy: bool = False) -> bool:
        """Store ``outcomes`` and count ``counted`` (and run ``ack``, a broker's
        ``ack_statement()``) in one statement, outside any transaction: it is a transaction
        by itself, with no ``BEGIN`` and ``COMMIT`` round trips. Unless it writes every
        outcome's row (there, and not final) and the ack acks every message, it undoes
        itself (a division by zero, which the server logs as an error) and returns False:
        the caller writes the batch the longer way, in a transaction. False at once where
        it cannot be one statement (not PostgreSQL, inside a transaction, a big batch).

        ``lazy``: the statement commits without waiting for the disk, so that readers see
        the outcomes sooner (about a third of a millisecond here); :meth:`flush` makes them
        durable. A batch of at most ``_COUNT_LATER`` outcomes (a reader may be waiting for
        each) is counted after its flush, with the runs this thread keeps back
        (``counters.Kept``: the upsert of counter rows every process adds to took half the
        statement's server time). A bigger batch (a busy worker) is counted in the
        statement, so that the counter rows are not held locked while the disk flushes.
        Counts are statistics: a flush that fails loses its batch's, unless the batch is
        written again (a broker outside the database)."""
        connection = connections[self.alias]
        if connection.vendor != "postgresql" or not (outcomes or counted or ack):
            return False
        rows = counters.tally(counted, _now()) if counted else None
        return self._alone(connection, list({o.task_id: o for o in outcomes}.values()), rows,
                           ack, lazy)

    def _alone(self, connection: Any, latest: Sequence[TaskOutcome],
               rows: dict[counters.Key, counters.Tally] | None,
               ack: tuple[str, list[Any]] | None = None, lazy: bool = False) -> bool:
        """:meth:`store_alone` of outcomes with one per id and their runs tallied."""
        if connection.in_atomic_block or len(latest) > _BATCH:
            return False
        later = lazy and len(latest) <= _COUNT_LATER
        also = counters.json_upsert(self.alias, rows) if rows and not later else None
        try:
            if len(latest) == 1:
                if not self._update_one(connection, latest[0], also, ack, lazy):
                    return False
            else:
                self._update_returning_json(connection, latest, also, whole=True, ack=ack,
                                            lazy=lazy)
        except DataError as exc:
            if _sqlstate(exc) != _DIVISION_BY_ZERO:
                raise
            return False
        if lazy:
            self._lazy.written, self._lazy.counts = True, rows if later else None
        return True

    def flush(self) -> None:
        """On PostgreSQL, a transaction that waits for the disk, which then holds everything
        committed before it, the lazy writes included (those of a connection closed since
        too: the log is the server's): the counters' upsert of the runs this thread kept
        back, when they are due (``counters.Kept``), or else ``durability.FLUSH``, after
        which the lazy batch's runs are kept back too. Nothing when this thread wrote nothing
        lazily. A flush that fails is not tried again, nor are its batch's counts (a batch
        written again is counted again); the runs kept back before it stay kept."""
        if not getattr(self._lazy, "written", False):
            return
        counts, self._lazy.written, self._lazy.counts = self._lazy.counts, False, None
        kept = self._kept()
        if kept.rows and kept.due():
            counters.upsert(self.alias, kept.with_rows(counts))
            kept.clear()
            return
        with connections[self.alias].cursor() as cursor:
            cursor.execute(durability.FLUSH)
        if counts:
            kept.add(counts)

    def write_kept(self, force: bool = False) -> None:
        """Add the runs this thread kept back (``flush``) to the counters, when they are due
        or ``force``; kept still when the database refuses (the error is raised)."""
        kept = self._kept()
        if kept.rows and (force or kept.due()):
            counters.upsert(self.alias, kept.rows)
            kept.clear()

    def _kept(self) -> counters.Kept:
        kept = getattr(self._lazy, "kept", None)
        if kept is None:
            kept = self._lazy.kept = counters.Kept()
        return kept

    def prune_counters(self, before: dt.datetime, batch_size: int) -> int:
        return counters.fold_before(self.alias, before, batch_size)

    def wait(self, timeout: float, task_ids: Collection[str] = (), *,
             by_get: bool = True) -> bool | None:
        """On PostgreSQL, LISTEN for the notification each batch of final outcomes sends,
        which names their tasks. With ``task_ids`` read ``by_get``, the ``LISTEN``, and the
        ``UNLISTEN`` once they are all named, ride on the next ``get()``."""
        return notify.wait(connections[self.alias], notify.RESULT_CHANNEL, timeout,
                           task_ids, defer=bool(task_ids) and by_get)

    def stop_waiting(self) -> None:
        notify.unlisten(connections[self.alias], notify.RESULT_CHANNEL)

    def _update_returning(self, outcomes: Sequence[TaskOutcome]) -> set[str]:
        """SQLite: write the outcome columns of the rows that exist and are not final (the
        PENDING rows made at enqueue) in one ``UPDATE … FROM``, the rows given as ``VALUES``;
        return the ids of the rows it wrote, final or missing ones are not among them.
        PostgreSQL is given the rows as JSON (:meth:`_update_returning_json`)."""
        connection = connections[self.alias]
        quote = connection.ops.quote_name
        adapt = connection.ops.adapt_datetimefield_value
        table = quote(TaskResult._meta.db_table)
        # Padded to a power of two with copies of the last row (they write the same values
        # to the same row), so that a handful of statement texts serve every batch size and
        # the driver's cache of parsed statements keeps them.
        size = 1 << max(len(outcomes) - 1, 0).bit_length()
        outcomes = [*outcomes, *[outcomes[-1]] * (size - len(outcomes))]
        params: list[Any] = []
        for o in outcomes:
            params += [o.task_id, o.state, _result_text(o), storable_text(o.traceback), o.worker,
                       o.attempts, o.retries,
                       adapt(o.started_at) if o.started_at else None,
                       adapt(o.date_done) if o.date_done else None]
        row = "(%s, %s, %s, %s, %s, %s, %s, %s, %s)"
        final = ", ".join(f"'{state}'" for state in sorted(states.READY_STATES))
        sql = (
            "WITH v(task_id, state, result, traceback, worker, attempts, retries, started_at, "
            f"date_done) AS (VALUES {', '.join([row] * len(outcomes))}) "
            f"UPDATE {table} SET state = v.state, result = v.result, "
            "traceback = v.traceback, worker = v.worker, attempts = v.attempts, "
            "retries = v.retries, started_at = v.started_at, date_done = v.date_done "
            f"FROM v WHERE {table}.task_id = v.task_id AND {table}.state NOT IN ({final}) "
            f"RETURNING {table}.task_id"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return {row[0] for row in cursor.fetchall()}

    def _update_returning_json(self, connection: Any, outcomes: Sequence[TaskOutcome],
                               also: tuple[str, str] | None = None, *, whole: bool = False,
                               ack: tuple[str, list[Any]] | None = None,
                               lazy: bool = False) -> set[str]:
        """PostgreSQL: :meth:`_update_returning` with the outcomes given as one JSON array,
        so that one statement text serves every batch size (the driver parses a statement
        of more than 50 parameters again each time: about 0.3 ms for a batch of 16).
        ``also``: a statement with one parameter (the counters' upsert) run by the same
        statement. ``whole``: the statement fails unless it writes every row (and ``ack``,
        a broker's ``DELETE … RETURNING`` it runs first, deletes one for each message)."""
        rows = [[o.task_id, o.state, _result_text(o), storable_text(o.traceback), o.worker,
                 o.attempts, o.retries,
                 o.started_at.isoformat() if o.started_at else None,
                 o.date_done.isoformat() if o.date_done else None] for o in outcomes]
        shown = len(rows) <= SIZE_SHOWN
        params: list[Any] = [*(ack[1] if ack else ()), json.dumps(rows),
                             *([[r[0] for r in rows]] if shown else [])]
        if also is not None:
            params.append(also[1])
        params.append(notify.RESULT_CHANNEL)
        if whole:
            params.append(len(rows))
            if ack is not None:
                params.append(len(ack[1][1]))
        sql = json_update(connection, shown, also[0] if also else "", whole,
                           ack[0] if ack else "", lazy)
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return {row[0] for row in cursor.fetchall() if row[0] is not None}

    def _update_one(self, connection: Any, outcome: TaskOutcome,
                    also: tuple[str, str] | None, ack: tuple[str, list[Any]] | None,
                    lazy: bool) -> bool:
        """PostgreSQL: ``_alone``'s statement for a single outcome (``pg_outcomes.one_update``):
        True when it wrote the row (and the ack acked); False when it wrote nothing, or
        raises the division by zero that undid it."""
        o = outcome
        params: list[Any] = [*(ack[1] if ack else ()), o.state, _result_text(o),
                             storable_text(o.traceback), o.worker, o.attempts, o.retries,
                             o.started_at, o.date_done, o.task_id]
        if also is not None:
            params.append(also[1])
        params.append(notify.RESULT_CHANNEL)
        if ack is not None:
            params.append(len(ack[1][1]))
        sql = one_update(connection, also=also[0] if also else "", ack=ack[0] if ack else "",
                         lazy=lazy)
        with connection.cursor() as cursor:
            prepared.execute(cursor, sql, params)
            return any(row[0] is not None for row in cursor.fetchall())

    def _update_locked(self, outcomes: Sequence[TaskOutcome]) -> set[str]:
        """Other databases (MySQL, MariaDB): lock the rows that exist and are not final, then
        write them with one ``bulk_update``; return their ids."""
        by_id = {o.task_id: o for o in outcomes}
        with transaction.atomic(using=self.alias):
            rows = list(self._rows.select_for_update()
                        .filter(task_id__in=list(by_id))
                        .exclude(state__in=states.READY_STATES)
                        .only("id", "task_id"))
            for row in rows:
                o = by_id[row.task_id]
                row.state, row.result = o.state, _result_text(o)
                row.traceback, row.worker = storable_text(o.traceback), o.worker
                row.attempts, row.retries = o.attempts, o.retries
                row.started_at, row.date_done = o.started_at, o.date_done
            self._rows.bulk_update(rows, OUTCOME_FIELDS, batch_size=_BATCH)
        return {row.task_id for row in rows}

    def update_state(self, task_id: str, state: str, meta: object, worker: str = "") -> bool:
        """One UPDATE of the row, unless it is final; no row is created (a task with
        ``ignore_result`` has none, and must not be left with one that never ends)."""
        changes: dict[str, Any] = {"state": state, "traceback": None,
                                   "result": None if meta is None else serialization.dumps(
                                       meta, f"the meta of {state}")}
        if worker:
            changes["worker"] = worker
        updated = self._rows.filter(task_id=task_id).exclude(
            state__in=states.READY_STATES).update(**changes)
        return bool(updated)

    def get(self, task_id: str) -> ResultMeta | None:
        """On PostgreSQL a statement of its own (the ORM's took three times as long: 0.75
        against 0.24 ms a call), sent with what ``notify.ahead()`` holds for the
        connection (a waiting reader's ``LISTEN`` or ``UNLISTEN``)."""
        connection = connections[self.alias]
        if connection.vendor == "postgresql":
            row = self._get_postgresql(connection, task_id)
        else:
            row = (self._rows.filter(task_id=task_id).values_list(*_META_FIELDS).first())
        if row is None:
            return None
        state, result, traceback, name, done, queue, worker, retries, *ids = row
        value = serialization.loads(result) if result else None
        return ResultMeta(task_id, state, value, traceback, name, done, queue, worker, retries,
                          *ids)

    def _get_postgresql(self, connection: Any, task_id: str) -> Sequence[Any] | None:
        select = (f"SELECT {', '.join(_META_FIELDS)} FROM "
                  f"{connection.ops.quote_name(TaskResult._meta.db_table)} WHERE task_id = %s")
        connection.ensure_connection()
        statements = notify.ahead(connection)
        try:
            with connection.cursor() as cursor:
                prepared.execute(cursor, select, [task_id], ahead=statements)
                row: Sequence[Any] | None = cursor.fetchone()
                return row
        except Exception:
            notify.put_back(connection, statements)  # undone with the failed query
            raise

    def final_states(self, task_ids: Sequence[str]) -> dict[str, str]:
        """Looked up by task id alone, the states compared here: given the state as well,
        PostgreSQL may combine the task id index with the state index, and then reads
        every final row's entry in the state index (milliseconds per batch on a table of
        some hundred thousand rows, where the ids alone take a few index probes).

        The worker asks this for every batch it takes, before running it: the statement is
        written here rather than built by the ORM, which took twice the database's own time
        (about 0.3 ms a call)."""
        connection = connections[self.alias]
        select = (f"SELECT task_id, state FROM "
                  f"{connection.ops.quote_name(TaskResult._meta.db_table)} WHERE task_id ")
        found: dict[str, str] = {}
        with connection.cursor() as cursor:
            for start in range(0, len(task_ids), _BATCH):
                chunk = list(task_ids[start:start + _BATCH])
                if connection.vendor == "postgresql":  # two statement texts for any size
                    # Above SIZE_SHOWN ids, an array the planner cannot see into
                    # (pg_outcomes.json_update() says why).
                    prepared.execute(cursor, select + (
                        "= ANY(%s)" if len(chunk) <= SIZE_SHOWN else
                        "= ANY(ARRAY(SELECT unnest(%s::text[])))"), [chunk])
                else:
                    cursor.execute(select + f"IN ({', '.join(['%s'] * len(chunk))})", chunk)
                found.update((task_id, state) for task_id, state in cursor.fetchall()
                             if state in states.READY_STATES)
        return found

    def state_lookup(self) -> str | None:
        table = connections[self.alias].ops.quote_name(TaskResult._meta.db_table)
        return f"(SELECT state FROM {table} WHERE {table}.task_id = {{task_id}})"

    def forget(self, task_id: str) -> None:
        self._rows.filter(task_id=task_id).delete()

    def drop_pending(self, task_ids: Sequence[str]) -> int:
        gone = 0
        for start in range(0, len(task_ids), _BATCH):
            gone += self._rows.filter(task_id__in=task_ids[start:start + _BATCH],
                                      state=states.PENDING).delete()[0]
        return gone

    def revoke(self, task_id: str) -> bool:
        if self.revoke_unfinished([task_id]):
            return True
        if self._rows.filter(task_id=task_id).exists():
            return False
        now = _now()
        self._rows.create(task_id=task_id, task_name="", state=states.REVOKED,
                          created_at=now, date_done=now)
        return True

    def revoke_unfinished(self, task_ids: Sequence[str]) -> int:
        now, revoked = _now(), 0
        for start in range(0, len(task_ids), _BATCH):
            revoked += (self._rows.filter(task_id__in=task_ids[start:start + _BATCH])
                        .exclude(state__in=states.READY_STATES)
                        .update(state=states.REVOKED, date_done=now))
        return revoked

    def prune(self, before: dt.datetime, batch_size: int) -> int:
        ids = list(self._rows.done_before(before).order_by("date_done")
                   .values_list("id", flat=True)[:batch_size])
        if not ids:
            return 0
        deleted, _ = self._rows.filter(id__in=ids).delete()
        return int(deleted)


def _pending_rows(messages: Sequence[Message], now: dt.datetime) -> list[TaskResult]:
    rows = []
    for m in messages:
        args, kwargs = masking.stored(m.task, m.args, m.kwargs)
        rows.append(TaskResult(task_id=m.id, task_name=m.task, state=states.PENDING,
                               args=args, kwargs=kwargs, queue=m.queue, priority=m.priority,
                               created_at=now, root_id=m.root_id or m.id,
                               parent_id=m.parent_id, group_id=m.group))
    return rows


_DIVISION_BY_ZERO = "22012"


def _sqlstate(error: BaseException) -> str | None:
    """The SQLSTATE of a database error (psycopg 3 or psycopg2), if it has one."""
    cause = error.__cause__
    return getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)


#: The runs of a lazy batch of up to this many outcomes are kept back after its flush
#: (``store_alone``, ``counters.Kept``).
_COUNT_LATER = 4


def pending_insert_json(connection: Any, messages: Sequence[Message], *,
                        commit_async: bool = False,
                        skip_existing: bool = False) -> tuple[str, list[Any]]:
    """PostgreSQL: the ``INSERT`` of :func:`pending_insert` with its rows given as one JSON
    array. The statement's text is the same for any number of rows, so the driver does not
    parse and quote a parameter per value (most of the time of a batch of 1,000 rows given
    as ``VALUES``), and the server plans it once.

    ``commit_async``: the statement turns ``synchronous_commit`` off for its own
    transaction (``set_config(..., true)``), so run in autocommit its commit does not wait
    for the disk; the session's setting is left as it was. ``skip_existing``: an id that
    has a row keeps it as it is."""
    rows = []
    for m in messages:
        args, kwargs = masking.stored(m.task, m.args, m.kwargs)
        rows.append((m.id, m.task, args, kwargs, m.queue, m.priority, m.root_id or m.id,
                     m.parent_id, m.group))
    sql = (f"INSERT INTO {connection.ops.quote_name(TaskResult._meta.db_table)} (task_id, "
           "task_name, state, args, kwargs, queue, priority, worker, attempts, retries, "
           "created_at, root_id, parent_id, group_id) SELECT r->>0, r->>1, 'PENDING', "
           "r->>2, r->>3, r->>4, (r->>5)::smallint, '', 0, 0, %s, r->>6, r->>7, r->>8 "
           "FROM jsonb_array_elements(%s::jsonb) AS r")
    if commit_async:
        sql += f", {durability.LAZY}"
    return sql + (_SKIP_EXISTING if skip_existing else ""), [_now(), json.dumps(rows)]


#: The end of a PostgreSQL ``INSERT`` of result rows that leaves the rows that exist alone.
_SKIP_EXISTING = " ON CONFLICT (task_id) DO NOTHING"


#: From this many messages on, PostgreSQL is given their rows by ``COPY`` (their PENDING
#: rows here, and the database broker's queue rows beside them).
COPY_FROM = 100


def copy_pending(cursor: Any, messages: Sequence[Message], now: dt.datetime) -> None:
    """PostgreSQL: ``COPY`` the PENDING result rows of ``messages`` in through ``cursor``
    (the database broker copies its queue rows beside them, in the same transaction)."""
    table = cursor.db.ops.quote_name(TaskResult._meta.db_table)
    with cursor.copy(f"COPY {table} (task_id, task_name, state, args, kwargs, queue, "
                     "priority, worker, attempts, retries, created_at, root_id, parent_id, "
                     "group_id) FROM STDIN") as copy:
        for m in messages:
            args, kwargs = masking.stored(m.task, m.args, m.kwargs)
            copy.write_row((m.id, m.task, states.PENDING, args, kwargs, m.queue, m.priority,
                            "", 0, 0, now, m.root_id or m.id, m.parent_id, m.group))


def pending_insert(connection: Any, messages: Sequence[Message], *,
                   commit_async: bool = False,
                   skip_existing: bool = False) -> tuple[str, list[Any]]:
    """The ``INSERT`` of PENDING result rows for ``messages``, and its parameters.

    ``commit_async``, for a single message on PostgreSQL: as ``pending_insert_json``'s, its
    row selected from the ``set_config()`` call (0.23 ms a call from a client here, where the
    JSON array's statement took 0.28). ``skip_existing``: as ``pending_insert_json``'s
    (PostgreSQL only)."""
    adapt = connection.ops.adapt_datetimefield_value
    now = adapt(_now())
    params: list[Any] = []
    for m in messages:
        args, kwargs = masking.stored(m.task, m.args, m.kwargs)
        params += [m.id, m.task, args, kwargs, m.queue, m.priority, now, m.root_id or m.id,
                   m.parent_id, m.group]
    row = "%s, %s, 'PENDING', %s, %s, %s, %s, '', 0, 0, %s, %s, %s, %s"
    sql = (f"INSERT INTO {connection.ops.quote_name(TaskResult._meta.db_table)} (task_id, "
           "task_name, state, args, kwargs, queue, priority, worker, attempts, retries, "
           "created_at, root_id, parent_id, group_id) ")
    if commit_async:
        assert len(messages) == 1, "one message at a time: pending_insert_json() takes more"
        sql += f"SELECT {row} FROM {durability.LAZY}"
    else:
        sql += "VALUES " + ", ".join([f"({row})"] * len(messages))
    return sql + (_SKIP_EXISTING if skip_existing else ""), params
