"""The result store in the project's database (``django://``, ``django://ALIAS``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from django.db import connections

from .. import clock, serialization, states
from ..conf import database_alias
from ..message import Message
from ..models import TaskResult
from ..result import ResultMeta, TaskOutcome
from .base import ResultStore

_BATCH = 500
# Arguments were written at enqueue; an outcome only adds them where no row existed.
_OUTCOME_FIELDS = ["state", "result", "traceback", "worker", "attempts", "retries",
                   "started_at", "date_done"]


def _now() -> dt.datetime:
    return clock.now()


class DatabaseResultStore(ResultStore):
    def __init__(self, url: str = "django://") -> None:
        super().__init__(url)
        self.database_alias = database_alias(url)

    @property
    def _rows(self) -> Any:
        return TaskResult.objects.using(self.database_alias)

    def create_pending(self, messages: Sequence[Message]) -> None:
        now = _now()
        rows = [
            TaskResult(task_id=m.id, task_name=m.task, state=states.PENDING,
                       args=serialization.dumps(list(m.args)),
                       kwargs=serialization.dumps(m.kwargs), queue=m.queue,
                       priority=m.priority, created_at=now)
            for m in messages
        ]
        self._rows.bulk_create(rows, batch_size=_BATCH)

    def _row(self, o: TaskOutcome, now: dt.datetime) -> TaskResult:
        return TaskResult(
            task_id=o.task_id, task_name=o.task_name, state=o.state,
            args=serialization.dumps(list(o.args)), kwargs=serialization.dumps(o.kwargs or {}),
            result=None if o.result is None else serialization.dumps(o.result),
            traceback=o.traceback, queue=o.queue, worker=o.worker, attempts=o.attempts,
            retries=o.retries, started_at=o.started_at, date_done=o.date_done, created_at=now,
        )

    def _upsert(self, rows: list[TaskResult], fields: list[str]) -> None:
        # MySQL and MariaDB cannot name the conflict target (ON DUPLICATE KEY UPDATE fires on
        # any unique key); task_id is the only one a new row can collide on there.
        features = connections[self.database_alias].features
        target = ["task_id"] if features.supports_update_conflicts_with_target else None
        self._rows.bulk_create(rows, batch_size=_BATCH, update_conflicts=True,
                               unique_fields=target, update_fields=fields)

    def mark_started(self, outcomes: Sequence[TaskOutcome]) -> None:
        now = _now()
        rows = [self._row(o, now) for o in outcomes]
        for row in rows:
            row.state, row.result, row.date_done = states.STARTED, None, None
        self._upsert(rows, ["state", "worker", "attempts", "retries", "started_at"])

    def store_outcomes(self, outcomes: Sequence[TaskOutcome]) -> None:
        if not outcomes:
            return
        missing = list(outcomes)
        if connections[self.database_alias].vendor == "postgresql":
            missing = self._update_existing(missing)
        if missing:
            now = _now()
            self._upsert([self._row(o, now) for o in missing], _OUTCOME_FIELDS)

    def _update_existing(self, outcomes: list[TaskOutcome]) -> list[TaskOutcome]:
        """PostgreSQL: write the outcome columns of rows that exist (the PENDING rows made at
        enqueue) in one ``UPDATE … FROM (VALUES …)``; return the outcomes that had no row.

        Cheaper than the upsert: no arguments are encoded again, no row is built."""
        connection = connections[self.database_alias]
        quote = connection.ops.quote_name
        adapt = connection.ops.adapt_datetimefield_value
        table = quote(TaskResult._meta.db_table)
        latest = {o.task_id: o for o in outcomes}  # one row may be updated once per statement
        updated: set[str] = set()
        items = list(latest.values())
        for start in range(0, len(items), _BATCH):
            chunk = items[start:start + _BATCH]
            params: list[Any] = []
            for o in chunk:
                params += [o.task_id, o.state,
                           None if o.result is None else serialization.dumps(o.result),
                           o.traceback, o.worker, o.attempts, o.retries,
                           adapt(o.started_at) if o.started_at else None,
                           adapt(o.date_done) if o.date_done else None]
            values = ", ".join(["(%s, %s, %s, %s, %s, %s::integer, %s::integer, "
                                "%s::timestamptz, %s::timestamptz)"] * len(chunk))
            sql = (
                f"UPDATE {table} AS t SET state = v.state, result = v.result, "
                "traceback = v.traceback, worker = v.worker, attempts = v.attempts, "
                "retries = v.retries, started_at = v.started_at, date_done = v.date_done "
                f"FROM (VALUES {values}) AS v(task_id, state, result, traceback, worker, "
                "attempts, retries, started_at, date_done) "
                "WHERE t.task_id = v.task_id RETURNING t.task_id"
            )
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                updated.update(row[0] for row in cursor.fetchall())
        return [o for o in items if o.task_id not in updated]

    def get(self, task_id: str) -> ResultMeta | None:
        row = (self._rows.filter(task_id=task_id)
               .values_list("state", "result", "traceback", "task_name", "date_done",
                            "queue", "worker", "retries").first())
        if row is None:
            return None
        state, result, traceback, name, done, queue, worker, retries = row
        value = serialization.loads(result) if result else None
        return ResultMeta(task_id, state, value, traceback, name, done, queue, worker, retries)

    def final_states(self, task_ids: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for start in range(0, len(task_ids), _BATCH):
            chunk = list(task_ids[start:start + _BATCH])
            found.update(self._rows.filter(task_id__in=chunk, state__in=states.READY_STATES)
                         .values_list("task_id", "state"))
        return found

    def forget(self, task_id: str) -> None:
        self._rows.filter(task_id=task_id).delete()

    def revoke(self, task_id: str) -> bool:
        now = _now()
        updated = (self._rows.filter(task_id=task_id)
                   .exclude(state__in=states.READY_STATES)
                   .update(state=states.REVOKED, date_done=now))
        if updated:
            return True
        if self._rows.filter(task_id=task_id).exists():
            return False
        self._rows.create(task_id=task_id, task_name="", state=states.REVOKED,
                          created_at=now, date_done=now)
        return True

    def prune(self, before: dt.datetime, batch_size: int) -> int:
        ids = list(self._rows.done_before(before).order_by("date_done")
                   .values_list("id", flat=True)[:batch_size])
        if not ids:
            return 0
        deleted, _ = self._rows.filter(id__in=ids).delete()
        return int(deleted)
