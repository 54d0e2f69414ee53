"""Workflows at settlement: a finished task's callbacks, the next task of its chain, its
chord's count, turned into follow-up messages.

:class:`Workflow` is a kernel hook. When a task that carries a workflow (Celery's ``embed``:
callbacks, errbacks, chain, chord) succeeds or fails, it gives the settlement a
:class:`Continuation`. The worker calls it in the transaction that stores the outcome and
acks the message (``worker/settle.py``), with the result store: it counts a chord member,
builds the follow-up messages, and the worker publishes them in that same transaction (on
Redis and RabbitMQ through the outbox, written in the result store's transaction). So a
follow-up is sent once: a worker that dies before the commit leaves the message to run
again, with nothing sent; after the commit the message is final and is never run again.
Eager mode calls it right after the task, and runs what it returns, in order.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

from django.db import transaction

from . import states
from .calling import utcnow
from .exceptions import ChordError
from .kernel import Hook, Run
from .result import TaskOutcome, exception_to_result

if TYPE_CHECKING:
    from .message import Message
    from .results.base import ResultStore
    from .results.workflows import ChordEnd

logger = logging.getLogger("django_tasks.worker")


class Workflow(Hook):
    """Hands a finished run's workflow to its settlement (see the module's docstring)."""

    def settle(self, run: Run) -> None:
        message, outcome = run.message, run.outcome
        if outcome is None or outcome.state not in (states.SUCCESS, states.FAILURE):
            return  # a retry: the workflow goes on when the task ends
        if not (message.callbacks or message.errbacks or message.chain or message.chord):
            return
        run.add_on_settle(Continuation(message, outcome.state, outcome.result))


class Continuation:
    """What one finished task of a workflow sets going; called with the result store in the
    transaction of its outcome, it returns the messages to publish there."""

    __slots__ = ("message", "result", "state")

    def __init__(self, message: Message, state: str, result: Any) -> None:
        self.message, self.state, self.result = message, state, result

    @property
    def key(self) -> str:
        """Chord rows are locked in this order within one settlement (no deadlocks)."""
        return self.message.group or ""

    def __call__(self, store: ResultStore | None, *, eager: bool = False) -> list[Message]:
        message = self.message
        found: list[Message] = []
        if self.state == states.SUCCESS:
            for callback in message.callbacks:
                found += follow_up(callback, (self.result,), message, store)
            if message.chain:
                found += follow_up(message.chain[-1], (self.result,), message, store,
                                   chain=list(message.chain[:-1]))
        else:
            for errback in message.errbacks:
                found += follow_up(errback, (message.id,), message, store)
        if message.chord is not None and message.group:
            from .results.workflows import workflows

            end = workflows(store, eager=eager).chord_member_done(
                message.group, message.id, self.state)
            if end is not None:
                found += chord_ended(end, message, store)
        return found

    def __repr__(self) -> str:
        return f"<Continuation of {self.message.task}[{self.message.id}] {self.state}>"


def follow_up(sig: dict[str, Any], args: tuple[Any, ...], parent: Message,
              store: ResultStore | None, **options: Any) -> list[Message]:
    """The messages of ``sig`` applied with ``args`` as the follow-up of ``parent``. One
    that cannot be built (arguments that do not fit the task) is logged, and recorded as
    the follow-up's FAILURE when it has an id: it never stops the settlement."""
    from .canvas import Signature

    try:
        signature = Signature.from_dict(sig)
        alias = store.database_alias if store is not None else None
        # A chord writes its row: a savepoint, so that a failure leaves the settlement's
        # transaction usable.
        with transaction.atomic(using=alias) if alias and signature.subtask_type == "chord" \
                else nullcontext():
            return signature.messages(args, {}, store, parent_id=parent.id,
                                      root_id=parent.root_id or parent.id, **options)
    except Exception as exc:  # noqa: BLE001 - the parent's outcome stands
        name = sig.get("task") if isinstance(sig, dict) else sig
        logger.error("The follow-up %s of task %s[%s] cannot be queued: %s: %s", name,
                     parent.task, parent.id, type(exc).__name__, exc)
        task_id = (sig.get("options") or {}).get("task_id") if isinstance(sig, dict) else None
        if task_id and store is not None:
            store.store_outcomes([_failure(task_id, str(name), exc, parent)])
        return []


def chord_ended(end: ChordEnd, last: Message, store: ResultStore | None) -> list[Message]:
    """The callback of a complete chord, with the members' results in order; or, for a
    chord whose member failed, the callback's FAILURE and its errbacks."""
    callback = end.callback
    if not end.failed:
        return follow_up(callback, (end.results,), last, store)
    reason = end.error.get("exc_message") if isinstance(end.error, dict) else end.error
    kind = end.error.get("exc_type") if isinstance(end.error, dict) else "error"
    error = ChordError(f"Dependency {end.failed_task_id} raised {kind}({reason!r})")
    if end.callback_id and store is not None:
        store.store_outcomes([_failure(end.callback_id, str(callback.get("task")), error,
                                       last, group_id=end.group_id)])
    logger.info("Chord %s failed: its member %s failed; its callback %s will not run",
                end.group_id, end.failed_task_id, callback.get("task"))
    errbacks = (callback.get("options") or {}).get("link_error") or []
    if isinstance(errbacks, dict):
        errbacks = [errbacks]
    found: list[Message] = []
    for errback in errbacks:
        found += follow_up(errback, (end.callback_id,), last, store)
    return found


def _failure(task_id: str, name: str, exc: BaseException, parent: Message,
             group_id: str | None = None) -> TaskOutcome:
    now = utcnow()
    return TaskOutcome(task_id=task_id, task_name=name, state=states.FAILURE,
                       result=exception_to_result(exc),
                       traceback=f"{type(exc).__name__}: {exc}", queue=parent.queue,
                       date_done=now, root_id=parent.root_id or parent.id,
                       parent_id=parent.id, group_id=group_id)
