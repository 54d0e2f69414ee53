"""The result store contract: where outcomes live, keyed by task id."""

from __future__ import annotations

import abc
import datetime as dt
from collections.abc import Collection, Sequence
from contextlib import nullcontext
from typing import Any

from ..message import Message
from ..result import ResultMeta, TaskOutcome


class ResultStore(abc.ABC):
    """Outcomes by task id. A final state (SUCCESS, FAILURE, REVOKED) is never replaced: a
    later write for the same id (a late worker's, a duplicate run's) leaves it as it is."""

    #: The database alias the store writes to, when it lives in one of the project's
    #: databases: outcomes and acks then share one transaction where the broker does too.
    database_alias: str | None = None

    def __init__(self, url: str) -> None:
        self.url = url

    @abc.abstractmethod
    def create_pending(self, messages: Sequence[Message], *, durable: bool = True) -> None:
        """Record queued tasks as PENDING (at enqueue, in the caller's transaction).

        ``durable=False``: the rows need not survive a crash of their database on their
        own, because a broker outside it holds the messages and the worker writes each
        outcome whether its row is there or not. Outside a transaction, a store may then
        commit them without waiting for the disk."""

    @abc.abstractmethod
    def mark_started(self, outcomes: Sequence[TaskOutcome]) -> None:
        """Record tasks as STARTED (for tasks that track it), unless already final."""

    @abc.abstractmethod
    def store_outcomes(self, outcomes: Sequence[TaskOutcome]) -> None:
        """Record finished, retrying or failed runs, many at once; ids already in a final
        state keep it."""

    @abc.abstractmethod
    def get(self, task_id: str) -> ResultMeta | None: ...

    def update_state(self, task_id: str, state: str, meta: object, worker: str = "") -> bool:
        """Write a running task's own state (``Task.update_state()``: ``PROGRESS`` and its
        ``meta``) at once, on the task's row; False when there is no row to update, or it
        is final already (a final state is never replaced)."""
        raise NotImplementedError(f"{type(self).__name__} cannot store a task's own states")

    def create_missing(self, messages: Sequence[Message]) -> None:
        """PENDING rows for those of ``messages`` that have none yet: the worker writes them
        as it takes a batch when enqueue left them out (``TASKS_STORE_PENDING = False``)."""
        self.create_pending([m for m in messages if self.get(m.id) is None])

    def count_outcomes(self, outcomes: Sequence[TaskOutcome]) -> None:  # noqa: B027
        """Add runs to the per-minute counters the dashboard reads (stored or not: an
        ``ignore_result`` success is counted too), in the transaction that stores the batch's
        outcomes. Only the database store keeps counters."""

    def store_and_count(self, outcomes: Sequence[TaskOutcome],
                        counted: Sequence[TaskOutcome], *, lazy: bool = False) -> None:
        """``store_outcomes(outcomes)``, then ``count_outcomes(counted)``: all or nothing, in
        the caller's transaction, or else in one of its own (a store may do both in one
        statement). ``lazy``: the write may be visible before it is durable; the caller
        calls :meth:`flush` before anything that relies on it (an ack)."""
        from django.db import transaction

        alias = self.database_alias
        with transaction.atomic(using=alias, savepoint=False) if alias else nullcontext():
            if outcomes:
                self.store_outcomes(outcomes)
            if counted:
                self.count_outcomes(counted)

    def store_alone(self, outcomes: Sequence[TaskOutcome], counted: Sequence[TaskOutcome],
                    ack: tuple[str, list[Any]] | None = None, *, lazy: bool = False) -> bool:
        """``store_and_count()`` and a broker's ``ack_statement()`` as one statement of its
        own, all of it or nothing; False (nothing written) where this store cannot, or when
        a row or an ack was missing. The database store on PostgreSQL can. ``lazy`` as for
        ``store_and_count()``."""
        return False

    def flush(self) -> None:  # noqa: B027 - optional hook
        """Make durable what this thread wrote with ``lazy``, if anything; it may be visible
        to readers before (the database store on PostgreSQL commits such writes without
        waiting for the disk, so a waiting ``get()`` wakes sooner)."""

    def write_kept(self, force: bool = False) -> None:  # noqa: B027 - optional hook
        """Add to the counters the runs this thread's ``flush()`` kept back, when they are
        due (about once a second) or ``force``: a worker calls this while it idles, and as it
        stops."""

    def prune_counters(self, before: dt.datetime, batch_size: int) -> int:
        """Fold up to ``batch_size`` counter rows of minutes before ``before`` into totals;
        return how many rows went."""
        return 0

    def wait(self, timeout: float, task_ids: Collection[str] = (), *,
             by_get: bool = True) -> bool | None:
        """Block up to ``timeout`` seconds until some outcome may have been stored: True when
        woken (read again), False on timeout, None where this store cannot wake a reader
        (``AsyncResult.get()`` polls instead). With ``task_ids``, only an outcome of one
        of them wakes the reader; ``by_get``: the reader's next look is ``get()`` of them
        (a store may send what it must with that read), not another read (a group's)."""
        return None

    def stop_waiting(self) -> None:  # noqa: B027 - optional hook
        """The reader has its outcome: stop listening for wake-ups."""

    @abc.abstractmethod
    def final_states(self, task_ids: Sequence[str]) -> dict[str, str]:
        """The ids among ``task_ids`` that already reached a final state, with that state."""

    def state_lookup(self) -> str | None:
        """SQL for the state stored for the task id in the column ``{task_id}`` (a format
        field), or NULL: a scalar subquery a broker in the store's database runs as it
        claims (``Broker.fetch(look=...)``), so the worker needs no :meth:`final_states`
        look of its own. None where the store has no such SQL."""
        return None

    @abc.abstractmethod
    def forget(self, task_id: str) -> None: ...

    @abc.abstractmethod
    def drop_pending(self, task_ids: Sequence[str]) -> int:
        """Delete the rows of ``task_ids`` that are still PENDING (a publish that failed:
        no message will write them on); return how many went. A row a worker moved on
        stays."""

    @abc.abstractmethod
    def revoke(self, task_id: str) -> bool:
        """Mark a task that has not finished as REVOKED; False if it already finished."""

    @abc.abstractmethod
    def revoke_unfinished(self, task_ids: Sequence[str]) -> int:
        """Mark the rows of ``task_ids`` that have not finished as REVOKED (their messages
        were purged); return how many. No row is made for an id without one."""

    @abc.abstractmethod
    def prune(self, before: dt.datetime, batch_size: int) -> int:
        """Delete up to ``batch_size`` results finished before ``before``; return how many."""

    def describe(self) -> str:
        """The URL with any password hidden, for banners and logs."""
        from ..conf import mask_url

        return mask_url(self.url)
