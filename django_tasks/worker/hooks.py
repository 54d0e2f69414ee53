"""The worker's features of task execution, as hooks of the kernel (``kernel.py``).

``worker_kernel()`` lists them in order: ``before`` runs down the list, ``after`` back up
it, so each feature wraps the ones below it (the slot is set before the signals and cleared
after them). Each hook keeps its consumer for what it needs: the broker, the settler, the
slot its supervisor reads, the batch's pending settlements.
"""

from __future__ import annotations

import datetime as dt
import logging
import reprlib
import time
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from .. import signals, states
from ..calling import utcnow
from ..conf import task_settings
from ..followups import Workflow
from ..kernel import AfterReturn, Hook, Kernel, Run, TaskHandlers
from ..process import connections
from . import limits
from .ratelimit import RateLimit
from .settle import Settlement
from .slots import Running

if TYPE_CHECKING:
    from .consumer import Consumer

logger = logging.getLogger("django_tasks.worker")
_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = 80


class ConsumerHook(Hook):
    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer


class Received(ConsumerHook):
    """Logs the task as received and sends ``task_received`` (sender: the consumer)."""

    def before(self, run: Run) -> bool | None:
        logger.info("Task %s received", run.label)
        signals.send(signals.task_received, self.consumer, request=run.request)
        return None


class AcksEarly(ConsumerHook):
    """``acks_late=False``: at most once, so the ack is durable before the task starts."""

    def before(self, run: Run) -> bool | None:
        if run.task.acks_late:
            return None
        consumer = self.consumer
        consumer._flush(consumer._pending)
        try:
            acked = consumer.broker.ack([run.item.delivery])
        except Exception as exc:
            consumer._away(exc)
            raise  # a bug of ours, if the database answers
        if not acked:
            consumer.settler.refused([Settlement(run.item.delivery, label=run.label)])
            return False
        run.acked = True
        return None


class RecordStart(ConsumerHook):
    """A message delivered before without being settled notes its start in the broker, so
    that the poison limit counts it if it takes this process down too."""

    def before(self, run: Run) -> bool | None:
        if run.acked or run.item.delivery.deliveries <= 1:
            return None
        return None if self.consumer._record_start(run.item) else False


class TrackStarted(ConsumerHook):
    """``track_started`` (or ``TASKS_TRACK_STARTED``): a STARTED row before the task runs."""

    def before(self, run: Run) -> bool | None:
        task, consumer = run.task, self.consumer
        track = task.track_started if task.track_started is not None \
            else task_settings.TRACK_STARTED
        if track and consumer.store is not None and not run.message.ignore_result:
            consumer._flush(consumer._pending)
            consumer._mark_started(run.item)
        return None


class TimeLimits(ConsumerHook):
    """The soft limit, and the hard one where the pool cannot kill the process: raised in
    a sync task's thread (``limits.py``), or by an async task's event loop (``aio.py``).
    In prefork the supervisor kills a process past its hard limit instead."""

    def before(self, run: Run) -> bool | None:
        soft, hard = limits.resolve(run.task, run.message, self.consumer._default_limits)
        run.soft_limit, run.hard_limit = soft, hard
        if run.task.is_async:
            run.loop_limits = (soft, hard if self.consumer.hard_limit_in_thread else None)
        return None

    def around(self, run: Run) -> AbstractContextManager[None] | None:
        if run.task.is_async:
            return None
        in_thread = run.hard_limit if self.consumer.hard_limit_in_thread else None
        if run.soft_limit or in_thread:
            return limits.enforced(run.label, run.soft_limit, in_thread)
        return None


class Recycling(ConsumerHook):
    """Counts the task for ``--max-tasks-per-child`` and ``--max-memory-per-child``."""

    def after(self, run: Run) -> None:
        self.consumer.recycler.after_task()


class RunningSlot(ConsumerHook):
    """What the supervisor reads: the running task, its hard deadline; cleared after it,
    when the database connections are checked as Django does around a request."""

    def before(self, run: Run) -> bool | None:
        began = run.began = time.monotonic()
        delivery, message, hard = run.item.delivery, run.message, run.hard_limit
        self.consumer.slot.set(Running(
            delivery.tag, delivery.token, message.id, message.task, delivery.queue,
            delivery.deliveries, message.retries, time.time(), hard or 0.0,
            began + hard if hard else 0.0))
        return None

    def after(self, run: Run) -> None:
        self.consumer.slot.clear()
        connections.refresh()


class RunSignals(Hook):
    """``task_prerun`` before the task, ``task_postrun`` after everything else about it."""

    def before(self, run: Run) -> bool | None:
        message = run.message
        signals.send(signals.task_prerun, run.task, task_id=message.id, task=run.task,
                     args=message.args, kwargs=message.kwargs)
        return None

    def after(self, run: Run) -> None:
        if not run.finished:
            return
        message, outcome = run.message, run.outcome
        assert outcome is not None
        signals.send(signals.task_postrun, run.task, task_id=message.id, task=run.task,
                     args=message.args, kwargs=message.kwargs, retval=outcome.result,
                     state=outcome.state)


class OutcomeSignals(Hook):
    """``task_success``, ``task_retry`` or ``task_failure``, with Celery's arguments."""

    def after(self, run: Run) -> None:
        if not run.finished:
            return
        task, message, outcome = run.task, run.message, run.outcome
        assert outcome is not None
        if outcome.state == states.SUCCESS:
            signals.send(signals.task_success, task, result=outcome.result)
        elif outcome.state == states.RETRY:
            signals.send(signals.task_retry, task, request=run.request, reason=run.exception,
                         einfo=run.einfo, task_id=message.id, countdown=run.retry_in)
        elif outcome.state == states.REVOKED:
            pass  # terminated: task_revoked was sent by the supervisor that stopped it
        else:
            signals.send(signals.task_failure, task, task_id=message.id,
                         exception=run.exception, args=message.args, kwargs=message.kwargs,
                         traceback=outcome.traceback, einfo=run.einfo)


class Logging(Hook):
    """How each outcome is logged, the way Celery users read it."""

    def after(self, run: Run) -> None:
        if not run.finished:
            return
        outcome = run.outcome
        assert outcome is not None
        runtime = time.monotonic() - run.began
        if outcome.state == states.SUCCESS:
            if logger.isEnabledFor(logging.INFO):  # the repr costs, and is often not wanted
                logger.info("Task %s succeeded in %.6fs: %s", run.label, runtime,
                            _repr.repr(outcome.result))
        elif outcome.state == states.RETRY:
            reason = (outcome.traceback or "").strip().splitlines()
            logger.info("Task %s retry: retry in %.3gs: %s", run.label, run.retry_in,
                        reason[-1] if reason else "")
        elif outcome.state == states.REVOKED:
            logger.warning("Task %s revoked and terminated after %.6fs", run.label, runtime)
        elif run.task.throws and isinstance(run.exception, run.task.throws):
            logger.info("Task %s raised expected: %r", run.label, run.exception)
        else:
            logger.error("Task %s failed in %.6fs: %s", run.label, runtime,
                         (outcome.traceback or "").rstrip())


class Recording(Hook):
    """The outcome is stored, but for the success of an ``ignore_result`` task (a retry
    or a failure is always recorded, so the id keeps a row); a retry is requeued."""

    def settle(self, run: Run) -> None:
        message, outcome = run.message, run.outcome
        assert outcome is not None
        run.record = not (message.ignore_result and outcome.state == states.SUCCESS)
        if run.retry_in is not None:
            run.retry = message.replace(retries=message.retries + 1,
                                        eta=utcnow() + dt.timedelta(seconds=run.retry_in))


def worker_kernel(consumer: Consumer) -> Kernel:
    """The kernel a consumer runs its tasks with."""
    return Kernel([
        RateLimit(consumer),  # first: a deferred message was not received, nor acked
        Received(consumer),
        AcksEarly(consumer),
        RecordStart(consumer),
        TrackStarted(consumer),
        TimeLimits(consumer),
        Recycling(consumer),
        RunningSlot(consumer),
        RunSignals(),
        AfterReturn(),
        OutcomeSignals(),
        TaskHandlers(),
        Logging(),
        Recording(),
        Workflow(),
    ])


def settlement_of(run: Run) -> Settlement:
    """The settlement of a run the kernel finished."""
    return Settlement(
        run.item.delivery, run.outcome if run.record else None, retry=run.retry,
        retry_delay=run.retry_in or 0.0, acked=run.acked, label=run.label,
        follow_up=tuple(run.follow_up) if run.follow_up else (),
        on_settle=tuple(run.on_settle) if run.on_settle else (), tally=run.outcome)
