"""What workflows keep beside the results: saved groups, chord counters, parents' children.

A chord's row is written with its members' messages. :meth:`WorkflowStore.chord_member_done`
is called in the transaction that stores a member's outcome (``worker/settle.py``): a
success adds one to the row's counter (one ``UPDATE`` of one row, whatever the chord's size),
and the member that makes it reach the chord's size gets the members' results back, in
order, to publish the callback with; the first failure marks the row FAILURE and gets the
callback back, to fail it. Each member is counted once: its outcome, its count and its
follow-ups commit together, and a message already final is never run again.
"""

from __future__ import annotations

import abc
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import clock, serialization, states
from ..exceptions import ResultBackendDisabled
from ..result import ResultMeta
from .base import ResultStore

_BATCH = 500


@dataclass(frozen=True, slots=True)
class ChordEnd:
    """How a chord ended, as its last member (or its first failed one) found it."""

    group_id: str
    callback: dict[str, Any]
    callback_id: str | None
    #: Complete: the members' results, in the chord's order.
    results: list[Any] = field(default_factory=list)
    #: Failed: the member that failed first, and its stored error.
    failed_task_id: str | None = None
    error: Any = None

    @property
    def failed(self) -> bool:
        return self.failed_task_id is not None


class WorkflowStore(abc.ABC):
    """Groups and chords in one result store."""

    @abc.abstractmethod
    def save_group(self, group_id: str, task_ids: Sequence[str], *,
                   callback: dict[str, Any] | None = None,
                   callback_id: str | None = None) -> None:
        """Keep a group's member ids (a chord's too, with its callback: its counter)."""

    @abc.abstractmethod
    def restore_group(self, group_id: str) -> list[str] | None:
        """The member ids of a saved group, or None."""

    @abc.abstractmethod
    def forget_group(self, group_id: str) -> None: ...

    @abc.abstractmethod
    def chord_member_done(self, group_id: str, task_id: str, state: str) -> ChordEnd | None:
        """Count a member whose outcome (``state``) was just stored; how the chord ended if
        this member ended it, else None."""

    @abc.abstractmethod
    def children(self, task_id: str) -> list[str]:
        """The ids of the tasks whose ``parent_id`` is ``task_id``, oldest first."""

    @abc.abstractmethod
    def metas(self, task_ids: Sequence[str]) -> dict[str, ResultMeta]:
        """What the store knows of each of ``task_ids`` (read in batches)."""


class DatabaseWorkflows(WorkflowStore):
    def __init__(self, alias: str) -> None:
        self.alias = alias

    @property
    def _groups(self) -> Any:
        from ..models import TaskGroup

        return TaskGroup.objects.using(self.alias)

    @property
    def _results(self) -> Any:
        from ..models import TaskResult

        return TaskResult.objects.using(self.alias)

    def save_group(self, group_id: str, task_ids: Sequence[str], *,
                   callback: dict[str, Any] | None = None,
                   callback_id: str | None = None) -> None:
        from ..models import TaskGroup

        self._groups.create(**_group_fields(TaskGroup, group_id, task_ids, callback,
                                            callback_id))

    def restore_group(self, group_id: str) -> list[str] | None:
        row = self._groups.filter(group_id=group_id).values_list("task_ids", flat=True).first()
        return None if row is None else list(serialization.loads(row))

    def forget_group(self, group_id: str) -> None:
        self._groups.filter(group_id=group_id).delete()

    def chord_member_done(self, group_id: str, task_id: str, state: str) -> ChordEnd | None:
        stored = self._results.filter(task_id=task_id).values_list("state", "result").first()
        if stored is not None and stored[0] in states.READY_STATES:
            state = stored[0]
        chord = self._groups.filter(group_id=group_id, state=states.PENDING)
        now = clock.now()
        if state == states.SUCCESS:
            # The row stays locked until the settlement commits: members count one by one.
            counted = self._count(group_id)
            if counted is None:
                return None  # failed already (or not a chord of ours)
            if counted[0] < counted[1]:
                return None
            ids, callback, callback_id = self._groups.filter(group_id=group_id).values_list(
                "task_ids", "callback", "callback_id").get()
            self._groups.filter(group_id=group_id).update(state=states.SUCCESS, date_done=now)
            order = serialization.loads(ids)
            found = self.metas(order)
            return ChordEnd(group_id, serialization.loads(callback), callback_id,
                            results=[found[i].result if i in found else None for i in order])
        if state in (states.FAILURE, states.REVOKED):
            if not chord.update(state=states.FAILURE, failed_task_id=task_id, date_done=now):
                return None  # another member failed first
            callback, callback_id = self._groups.filter(group_id=group_id).values_list(
                "callback", "callback_id").get()
            error = serialization.loads(stored[1]) if stored is not None and stored[1] else None
            return ChordEnd(group_id, serialization.loads(callback), callback_id,
                            failed_task_id=task_id, error=error)
        return None

    def _count(self, group_id: str) -> tuple[int, int] | None:
        """Add one to a pending chord's count: (done, size), or None if it is not pending.
        One statement where the database returns what it updated."""
        from django.db import connections
        from django.db.models import F

        from ..models import TaskGroup

        connection = connections[self.alias]
        if connection.vendor in ("postgresql", "sqlite"):
            table = connection.ops.quote_name(TaskGroup._meta.db_table)
            with connection.cursor() as cursor:
                cursor.execute(f"UPDATE {table} SET done = done + 1 WHERE group_id = %s AND "
                               "state = %s RETURNING done, size", [group_id, states.PENDING])
                row = cursor.fetchone()
            return None if row is None else (int(row[0]), int(row[1]))
        chord = self._groups.filter(group_id=group_id, state=states.PENDING)
        if not chord.update(done=F("done") + 1):
            return None
        done, size = self._groups.filter(group_id=group_id).values_list("done", "size").get()
        return int(done), int(size)

    def children(self, task_id: str) -> list[str]:
        return list(self._results.filter(parent_id=task_id).order_by("created_at", "id")
                    .values_list("task_id", flat=True))

    def metas(self, task_ids: Sequence[str]) -> dict[str, ResultMeta]:
        found: dict[str, ResultMeta] = {}
        for start in range(0, len(task_ids), _BATCH):
            rows = self._results.filter(task_id__in=list(task_ids[start:start + _BATCH]))
            for task_id, state, result, traceback, name in rows.values_list(
                    "task_id", "state", "result", "traceback", "task_name"):
                found[task_id] = ResultMeta(task_id, state,
                                            serialization.loads(result) if result else None,
                                            traceback, name)
        return found


def _group_fields(model: Any, group_id: str, task_ids: Sequence[str],
                  callback: dict[str, Any] | None, callback_id: str | None) -> dict[str, Any]:
    return {"group_id": group_id, "task_ids": serialization.dumps(list(task_ids)),
            "size": len(task_ids),
            "callback": serialization.dumps(callback) if callback is not None else None,
            "callback_id": callback_id, "created_at": clock.now()}


@dataclass
class _MemoryGroup:
    task_ids: list[str]
    callback: dict[str, Any] | None
    callback_id: str | None
    done: int = 0
    state: str = states.PENDING
    failed_task_id: str | None = None


class MemoryWorkflows(WorkflowStore):
    """Groups and chords beside a :class:`~django_tasks.results.memory.MemoryResultStore`
    (unit tests, and eager mode without a result store)."""

    def __init__(self, store: ResultStore | None) -> None:
        self.store = store
        self.groups: dict[str, _MemoryGroup] = {}
        self.lock = threading.Lock()
        #: Outcomes of eager runs when there is no result store to read them from.
        self.values: dict[str, ResultMeta] = {}

    def save_group(self, group_id: str, task_ids: Sequence[str], *,
                   callback: dict[str, Any] | None = None,
                   callback_id: str | None = None) -> None:
        with self.lock:
            self.groups[group_id] = _MemoryGroup(list(task_ids), callback, callback_id)

    def restore_group(self, group_id: str) -> list[str] | None:
        found = self.groups.get(group_id)
        return None if found is None else list(found.task_ids)

    def forget_group(self, group_id: str) -> None:
        self.groups.pop(group_id, None)

    def _get(self, task_id: str) -> ResultMeta | None:
        if self.store is not None:
            return self.store.get(task_id)
        return self.values.get(task_id)

    def chord_member_done(self, group_id: str, task_id: str, state: str) -> ChordEnd | None:
        with self.lock:
            chord = self.groups.get(group_id)
            if chord is None or chord.state != states.PENDING or chord.callback is None:
                return None
            stored = self._get(task_id)
            if stored is not None and stored.state in states.READY_STATES:
                state = stored.state
            if state == states.SUCCESS:
                chord.done += 1
                if chord.done < len(chord.task_ids):
                    return None
                chord.state = states.SUCCESS
                metas = self.metas(chord.task_ids)
                return ChordEnd(group_id, chord.callback, chord.callback_id,
                                results=[metas[i].result if i in metas else None
                                         for i in chord.task_ids])
            if state in (states.FAILURE, states.REVOKED):
                chord.state, chord.failed_task_id = states.FAILURE, task_id
                return ChordEnd(group_id, chord.callback, chord.callback_id,
                                failed_task_id=task_id,
                                error=stored.result if stored is not None else None)
            return None

    def children(self, task_id: str) -> list[str]:
        metas = getattr(self.store, "_results", {}) if self.store is not None else self.values
        return [m.task_id for m in metas.values() if m.parent_id == task_id]

    def metas(self, task_ids: Sequence[str]) -> dict[str, ResultMeta]:
        found = (self._get(i) for i in task_ids)
        return {m.task_id: m for m in found if m is not None}


_memory: weakref.WeakKeyDictionary[ResultStore, MemoryWorkflows] = weakref.WeakKeyDictionary()
_storeless: MemoryWorkflows | None = None


def workflows(store: ResultStore | None, *, eager: bool = False) -> WorkflowStore:
    """The workflow part of ``store``. Without a result store only eager mode has one (in
    this process's memory): a worker needs the store to count a chord."""
    global _storeless
    from .database import DatabaseResultStore
    from .memory import MemoryResultStore

    if isinstance(store, DatabaseResultStore):
        return DatabaseWorkflows(store.alias)
    if isinstance(store, MemoryResultStore):
        if store not in _memory:
            _memory[store] = MemoryWorkflows(store)
        return _memory[store]
    if store is None:
        from ..conf import task_settings

        if eager or task_settings.ALWAYS_EAGER:
            if _storeless is None:
                _storeless = MemoryWorkflows(None)
            return _storeless
        raise ResultBackendDisabled(
            "Chords and saved groups need a result store: set TASKS_RESULT_BACKEND (the "
            "default, 'django://', keeps them in the project's database).")
    custom = getattr(store, "workflows", None)
    if callable(custom):
        return custom()
    raise ResultBackendDisabled(f"The result store {type(store).__name__} keeps no groups or "
                                "chords; give it a workflows() method returning a "
                                "WorkflowStore.")
