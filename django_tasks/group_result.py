"""``GroupResult``: the results of a group's tasks, with Celery's API."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

from . import states
from .conf import get_result_store
from .exceptions import ResultBackendDisabled
from .exceptions import TimeoutError as TaskTimeoutError
from .result import AsyncResult, ResultMeta, result_to_exception


class GroupResult:
    """The results of a group's members, in the group's order. Each look reads them all in
    one query (per 500 members)."""

    def __init__(self, id: str, results: Sequence[AsyncResult] = (),
                 parent: AsyncResult | None = None) -> None:
        self.id = str(id)
        self.results = list(results)
        self.parent = parent

    def __repr__(self) -> str:
        return f"<GroupResult: {self.id} [{', '.join(r.id for r in self.results)}]>"

    def __str__(self) -> str:
        return self.id

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self) -> Iterator[AsyncResult]:
        return iter(self.results)

    def __getitem__(self, index: int) -> AsyncResult:
        return self.results[index]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GroupResult) and other.id == self.id \
            and other.results == self.results

    def __hash__(self) -> int:
        return hash(self.id)

    @property
    def children(self) -> list[AsyncResult]:
        return self.results

    @property
    def _store(self) -> Any:
        store = get_result_store()
        if store is None:
            raise ResultBackendDisabled(
                "No result backend is configured (TASKS_RESULT_BACKEND is None), so a "
                "group's results cannot be read.")
        return store

    def _metas(self) -> dict[str, ResultMeta]:
        from .results.workflows import workflows

        ids = [r.id for r in self.results]
        found = {i: r._cache for r in self.results if (i := r.id) and r._cache is not None}
        missing = [i for i in ids if i not in found]
        if missing:
            found.update(workflows(self._store).metas(missing))
        return found

    def _states(self) -> list[str]:
        metas = self._metas()
        return [metas[r.id].state if r.id in metas else states.PENDING for r in self.results]

    def ready(self) -> bool:
        """True when every member has finished (succeeded, failed or been revoked)."""
        return all(s in states.READY_STATES for s in self._states())

    def successful(self) -> bool:
        """True when every member succeeded."""
        return all(s == states.SUCCESS for s in self._states())

    def failed(self) -> bool:
        """True when any member failed."""
        return any(s == states.FAILURE for s in self._states())

    def waiting(self) -> bool:
        """True while any member has not finished."""
        return not self.ready()

    def completed_count(self) -> int:
        """How many members succeeded (Celery counts successes only)."""
        return sum(s == states.SUCCESS for s in self._states())

    def get(self, timeout: float | None = None, propagate: bool = True,
            interval: float = 0.5) -> list[Any]:
        """Wait until every member has finished; their results in order. With ``propagate``,
        the first failure in the group's order is raised here."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = min(0.002, interval)
        store = self._store
        try:
            while True:
                metas = self._metas()
                if all(r.id in metas and metas[r.id].state in states.READY_STATES
                       for r in self.results):
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    done = sum(r.id in metas and metas[r.id].state in states.READY_STATES
                               for r in self.results)
                    raise TaskTimeoutError(
                        f"Group {self.id}: {done} of {len(self.results)} tasks were ready "
                        f"after {timeout} s.")
                left = interval if deadline is None else max(0.0, deadline - time.monotonic())
                # Woken only by an outcome of a member still running, not by every batch.
                running = [r.id for r in self.results if r.id not in metas
                           or metas[r.id].state not in states.READY_STATES]
                if store.wait(min(interval, left), running, by_get=False) is None:
                    time.sleep(min(delay, left))
                    delay = min(delay * 1.5, interval)
        finally:
            store.stop_waiting()
        values = []
        for r in self.results:
            meta = metas[r.id]
            if meta.state != states.SUCCESS and propagate:
                raise result_to_exception(meta.result)
            values.append(meta.result if meta.state == states.SUCCESS
                          else result_to_exception(meta.result))
        return values

    join = get

    def revoke(self, connection: Any = None, terminate: bool = False,
               signal: str | None = None) -> None:
        for r in self.results:
            r.revoke(terminate=terminate, signal=signal)

    def forget(self) -> None:
        for r in self.results:
            r.forget()
        self.delete()

    # -- saving ---------------------------------------------------------------------------

    def save(self) -> GroupResult:
        """Keep the member ids in the result store, to :meth:`restore` by id later."""
        from .results.workflows import workflows

        workflows(self._store).save_group(self.id, [r.id for r in self.results])
        return self

    def delete(self) -> None:
        from .results.workflows import workflows

        workflows(self._store).forget_group(self.id)

    @classmethod
    def restore(cls, id: str) -> GroupResult | None:
        """The group saved with :meth:`save` (or a chord's members), or None."""
        from .results.workflows import workflows

        store = get_result_store()
        if store is None:
            raise ResultBackendDisabled("No result backend is configured, so no group can "
                                        "be restored.")
        ids = workflows(store).restore_group(id)
        return None if ids is None else cls(id, [AsyncResult(i) for i in ids])
