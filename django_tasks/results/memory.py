"""An in-process result store for unit tests."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Sequence
from dataclasses import replace

from .. import clock, states
from ..message import Message
from ..result import ResultMeta, TaskOutcome
from .base import ResultStore


class MemoryResultStore(ResultStore):
    def __init__(self, url: str = "memory://") -> None:
        super().__init__(url)
        self._results: dict[str, ResultMeta] = {}
        self._lock = threading.Lock()

    def create_pending(self, messages: Sequence[Message], *, durable: bool = True) -> None:
        with self._lock:
            for m in messages:
                self._results[m.id] = ResultMeta(m.id, states.PENDING, task_name=m.task,
                                                 queue=m.queue, root_id=m.root_id or m.id,
                                                 parent_id=m.parent_id, group_id=m.group)

    def _final(self, task_id: str) -> bool:
        meta = self._results.get(task_id)
        return meta is not None and meta.state in states.READY_STATES

    def mark_started(self, outcomes: Sequence[TaskOutcome]) -> None:
        with self._lock:
            for o in outcomes:
                if not self._final(o.task_id):
                    self._results[o.task_id] = replace(o.meta(), state=states.STARTED,
                                                       result=None)

    def store_outcomes(self, outcomes: Sequence[TaskOutcome]) -> None:
        with self._lock:
            for o in outcomes:
                if not self._final(o.task_id):
                    self._results[o.task_id] = o.meta()

    def update_state(self, task_id: str, state: str, meta: object, worker: str = "") -> bool:
        with self._lock:
            current = self._results.get(task_id)
            if current is None or current.state in states.READY_STATES:
                return False
            self._results[task_id] = replace(current, state=state, result=meta,
                                             traceback=None, worker=worker or current.worker)
            return True

    def get(self, task_id: str) -> ResultMeta | None:
        return self._results.get(task_id)

    def final_states(self, task_ids: Sequence[str]) -> dict[str, str]:
        found = (self._results.get(i) for i in task_ids)
        return {m.task_id: m.state for m in found if m and m.state in states.READY_STATES}

    def forget(self, task_id: str) -> None:
        with self._lock:
            self._results.pop(task_id, None)

    def drop_pending(self, task_ids: Sequence[str]) -> int:
        with self._lock:
            gone = [i for i in task_ids if i in self._results
                    and self._results[i].state == states.PENDING]
            for task_id in gone:
                del self._results[task_id]
        return len(gone)

    def revoke(self, task_id: str) -> bool:
        with self._lock:
            meta = self._results.get(task_id)
            if meta is not None and meta.state in states.READY_STATES:
                return False
            now = clock.now()
            base = meta or ResultMeta(task_id, states.PENDING)
            self._results[task_id] = replace(base, state=states.REVOKED, date_done=now)
            return True

    def revoke_unfinished(self, task_ids: Sequence[str]) -> int:
        with self._lock:
            now, revoked = clock.now(), 0
            for task_id in task_ids:
                meta = self._results.get(task_id)
                if meta is not None and meta.state not in states.READY_STATES:
                    self._results[task_id] = replace(meta, state=states.REVOKED, date_done=now)
                    revoked += 1
            return revoked

    def prune(self, before: dt.datetime, batch_size: int) -> int:
        with self._lock:
            doomed = [k for k, m in self._results.items()
                      if m.state in states.READY_STATES and m.date_done and m.date_done < before]
            for key in doomed[:batch_size]:
                del self._results[key]
            return min(len(doomed), batch_size)
