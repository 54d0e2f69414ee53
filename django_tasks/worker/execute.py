"""What happens to one delivery: decode, check, run, and decide how to settle it."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import serialization, signals, states
from ..brokers.base import Delivery
from ..calling import utcnow
from ..conf import task_settings
from ..exceptions import DecodeError, NotRegistered, TaskRevokedError, WorkerLostError
from ..followups import Continuation
from ..kernel import Kernel, Run
from ..message import MAX_NAME, Message, name_error, printable
from ..registry import registry
from ..request import Request
from ..result import TaskOutcome, exception_to_result
from ..task import Task
from .hooks import settlement_of
from .settle import Settlement

if TYPE_CHECKING:
    from ..results.base import ResultStore

logger = logging.getLogger("django_tasks.worker")
#: A message whose holders keep dying before anyone knows it started (a whole worker
#: killed while it waited in a batch, or while decoding it) ends after this many times
#: TASKS_MAX_DELIVERIES deliveries.
UNSTARTED_FACTOR = 3


@dataclass(slots=True)
class Prepared:
    """A delivery decoded and looked up, before it runs."""

    delivery: Delivery
    message: Message | None = None
    task: Task[Any, Any] | None = None
    problem: BaseException | None = None  # decided without running: FAILURE/REVOKED
    final_state: str | None = None  # already finished elsewhere: ack, don't run
    readable_id: str | None = None
    readable_name: str = ""


def _read_id(delivery: Delivery) -> tuple[str | None, str]:
    """The task id and name of a message that does not fully decode, where readable: an id
    only if it can be stored (else None), the name made storable."""
    try:
        envelope = delivery.envelope
        if envelope is None:
            envelope = serialization.loads(delivery.body)
        headers = envelope.get("headers") or {}
        task_id = headers.get("id") if isinstance(headers, dict) else None
        name = str(headers.get("task") or "")
    except Exception:  # noqa: BLE001 - anything unreadable has no id
        return None, ""
    if name_error(name, "name"):
        name = printable(name, MAX_NAME) if name else ""
    return (task_id if not name_error(task_id, "id") else None), name


def prepare(deliveries: Sequence[Delivery], store: ResultStore | None) -> list[Prepared]:
    """Decode a batch and find, in one query, the ids that already finished (but for those
    the broker looked up as it claimed them); where enqueue wrote no PENDING rows, write
    them now, so that a running task has its row."""
    prepared: list[Prepared] = []
    for delivery in deliveries:
        item = Prepared(delivery)
        try:
            item.message = delivery.message()
            item.readable_id = item.message.id
            item.task = registry.get(item.message.task)
        except NotRegistered as exc:
            item.problem = exc
        except Exception as exc:  # noqa: BLE001 - whatever a message holds, it never runs
            item.problem = exc if isinstance(exc, DecodeError) else DecodeError(
                f"message cannot be decoded: {type(exc).__name__}: {exc}")
            found_id, item.readable_name = _read_id(delivery)
            # The broker's own record of the id, where the body has none it can give.
            stored_id = delivery.task_id if not name_error(delivery.task_id, "id") else None
            item.readable_id = found_id or stored_id
        prepared.append(item)
    if store is not None:
        ids = [p.readable_id for p in prepared if p.readable_id and not _looked_up(p)]
        final = store.final_states(ids) if ids else {}
        for item in prepared:
            state = item.delivery.stored_state if _looked_up(item) else \
                final.get(item.readable_id or "")
            if state in states.READY_STATES:
                item.final_state = state
        if not task_settings.STORE_PENDING:
            store.create_missing([p.message for p in prepared if p.message is not None
                                  and p.final_state is None and not p.message.ignore_result])
    return prepared


def _looked_up(item: Prepared) -> bool:
    """Whether the broker read the state stored for this message's own id as it claimed it."""
    return item.delivery.looked_up and item.readable_id == item.delivery.task_id


def _failure(item: Prepared, exc: BaseException, hostname: str,
             state: str = states.FAILURE) -> TaskOutcome:
    message = item.message
    now = utcnow()
    return TaskOutcome(
        task_id=item.readable_id or "",
        task_name=message.task if message else item.readable_name,
        state=state, result=exception_to_result(exc), traceback=f"{type(exc).__name__}: {exc}",
        args=message.args if message else (), kwargs=message.kwargs if message else {},
        queue=item.delivery.queue, worker=hostname, attempts=item.delivery.deliveries,
        retries=message.retries if message else 0, started_at=None, date_done=now,
    )


def check(item: Prepared, hostname: str) -> Settlement | None:
    """Settle a delivery that must not run; ``None`` when it should run."""
    delivery, message = item.delivery, item.message
    if message is not None:
        label = printable(f"{message.task}[{message.id}]")
    else:
        label = printable(f"message {delivery.tag}"
                          + (f" [{item.readable_id}]" if item.readable_id else ""))
    if item.final_state is not None:
        logger.info("Task %s is already %s; acked without running it again.",
                    label, item.final_state)
        if item.final_state == states.REVOKED and message is not None:
            _revoked(item, hostname, expired=False)
            return Settlement(delivery, label=label,
                              on_settle=_workflow(message, states.REVOKED))
        return Settlement(delivery, label=label)
    problem = item.problem
    state = states.FAILURE
    if problem is None and message is not None:
        limit = int(task_settings.MAX_DELIVERIES)
        if delivery.runs >= limit:
            problem = WorkerLostError(
                f"Task {label} was running {delivery.runs} times when its process died "
                "(killed, out of memory or crashed), and never finished. "
                f"TASKS_MAX_DELIVERIES={limit}; it is not delivered again."
            )
        elif delivery.deliveries > UNSTARTED_FACTOR * limit:
            problem = WorkerLostError(
                f"Task {label} was delivered {delivery.deliveries - 1} times and never "
                "finished: each time the worker holding it died or was cut off "
                f"({UNSTARTED_FACTOR} x TASKS_MAX_DELIVERIES={limit}); it is not delivered "
                "again."
            )
        elif message.expires is not None and message.expires < utcnow():
            problem = TaskRevokedError(
                f"Task {label} expired at {message.expires.isoformat()} before it ran."
            )
            state = states.REVOKED
    if problem is None:
        return None
    logger.error("Rejected %s on queue %s: %s", label, printable(repr(delivery.queue)),
                 printable(str(problem), 2000))
    signals.send(signals.task_rejected, None, task_id=item.readable_id, reason=str(problem),
                 message=delivery, exc=problem)
    if state == states.REVOKED:
        _revoked(item, hostname, expired=True)
    outcome = _failure(item, problem, hostname, state) if item.readable_id else None
    return Settlement(delivery, outcome, label=label,
                      on_settle=_workflow(message, state) if outcome is not None else ())


def _workflow(message: Message | None, state: str) -> tuple[Continuation, ...]:
    """A workflow's member settled without running (expired, revoked, past its delivery
    limit) still ends its part: its errbacks run, its chord fails."""
    if message is None or not (message.errbacks or message.chord):
        return ()
    return (Continuation(message, state, None),)


def _revoked(item: Prepared, hostname: str, *, expired: bool) -> None:
    """``task_revoked`` for a message settled unrun: revoked before it ran, or expired."""
    assert item.message is not None
    request = Request.from_message(item.message, hostname=hostname,
                                   attempts=item.delivery.deliveries)
    signals.send(signals.task_revoked, item.task, request=request, terminated=False,
                 signum=None, expired=expired)


def execute(item: Prepared, kernel: Kernel, hostname: str) -> Settlement | None:
    """Run a checked delivery through the worker's kernel (``hooks.worker_kernel``); None
    when a hook stopped it before it ran (its lease moved on, its early ack was refused)."""
    message, task = item.message, item.task
    assert message is not None and task is not None
    run = Run(task, message, hostname, item.delivery.deliveries, item=item,
              label=printable(f"{message.task}[{message.id}]"))
    if not kernel.run(run):
        return None
    return settlement_of(run)
