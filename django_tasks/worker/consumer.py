"""The loop each pool process (or thread) runs: fetch a batch, run it, record, ack.

Every consuming process fetches and acks its own batches; nothing passes through a single
dispatcher, so throughput grows with processes. Batches start at one message and double
while tasks are quick, and drop back to one after a slow task; messages fetched but not yet
started are handed back when a batch has been held longer than ``HOLD_SECONDS``, so a long
task never keeps short ones waiting behind it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Protocol

from django.db import transaction

from ..brokers.base import Delivery
from ..conf import get_broker, get_result_store, task_settings
from . import connections, limits
from .execute import Prepared, Settlement, check, execute, prepare
from .recycle import Recycler

logger = logging.getLogger("django_tasks.worker")

HOLD_SECONDS = 1.0
FLUSH_SECONDS = 0.02
SLOW_TASK_SECONDS = 0.5
MIN_IDLE = 0.001


class StopFlag(Protocol):
    def is_set(self) -> bool: ...
    def wait(self, timeout: float | None = None) -> bool: ...


@dataclass(frozen=True, slots=True)
class Running:
    """The task a consumer is running, as its supervisor sees it."""

    tag: str
    task_id: str
    task_name: str
    queue: str
    deliveries: int
    retries: int
    started: float  # time.time()
    hard_limit: float  # seconds; 0 is none
    deadline: float  # time.monotonic() when the hard limit is reached; 0 is none

    @property
    def label(self) -> str:
        return f"{self.task_name}[{self.task_id}]"

    @property
    def delivery_tag(self) -> object:
        """The broker's tag, as the broker wrote it (the database broker's are row ids)."""
        return int(self.tag) if self.tag.isdigit() else self.tag

    def encode(self) -> str:
        return "\t".join(str(getattr(self, name)) for name in self.__slots__)

    @classmethod
    def decode(cls, raw: str) -> Running | None:
        fields = raw.split("\t")
        if len(fields) != len(cls.__slots__):
            return None
        tag, task_id, name, queue, deliveries, retries, started, hard, deadline = fields
        return cls(tag, task_id, name, queue, int(deliveries), int(retries), float(started),
                   float(hard), float(deadline))


class Slot:
    """Where a consumer notes what it is running and when it last made progress (a poll
    of the broker, a finished task), for its supervisor to read."""

    def __init__(self) -> None:
        self.value: Running | None = None
        self.progress = time.monotonic()

    def set(self, running: Running) -> None:
        self.value = running

    def clear(self) -> None:
        self.value = None
        self.mark()

    def get(self) -> Running | None:
        return self.value

    def mark(self) -> None:
        self.progress = time.monotonic()

    def finished(self) -> None:
        """The consumer has stopped: it is not stalled, whatever the time."""
        self.progress = float("inf")


def shared_alias(broker: Any, store: Any) -> str | None:
    """The database alias to write outcomes and acks in one transaction, when the broker
    and the result store both live there; else None."""
    alias = getattr(broker, "database_alias", None)
    if broker.transactional and getattr(store, "database_alias", None) == alias:
        return alias
    return None


class Consumer:
    def __init__(self, *, queues: Sequence[str], owner: str, hostname: str, prefetch: int,
                 lease: float, stop: StopFlag, slot: Slot | None = None,
                 hard_limit_in_thread: bool = True, recycler: Recycler | None = None) -> None:
        self.queues = list(queues)
        self.owner = owner
        self.hostname = hostname
        self.prefetch = max(1, prefetch)
        self.lease = lease
        self.stop = stop
        self.slot = slot or Slot()
        # prefork's supervisor kills a process past its hard limit; other pools raise it
        self.hard_limit_in_thread = hard_limit_in_thread
        self.recycler = recycler or Recycler()
        self.broker = get_broker()
        self.store = get_result_store()
        self._atomic = shared_alias(self.broker, self.store)
        self._unsettled: list[Delivery] = []
        self._default_limits: tuple[float | None, float | None] = (None, None)

    def run(self) -> None:
        batch, idle, failures = 1, MIN_IDLE, 0
        poll = float(task_settings.POLL_INTERVAL)
        while not self.stop.is_set() and not self.recycler.triggered.is_set():
            try:
                connections.refresh()
                if self._unsettled:  # ran, but their outcomes could not be recorded
                    self.broker.release(self._unsettled, count=False)
                    self._unsettled.clear()
                deliveries = self.broker.fetch(self.queues, self.owner, batch, self.lease)
                self.slot.mark()
                failures = 0
            except Exception as exc:  # noqa: BLE001 - the broker may be briefly away
                failures += 1
                pause = min(0.1 * 2 ** failures, 5.0)
                logger.warning("Cannot fetch from the broker (%s); retrying in %.1fs", exc, pause)
                connections.close_all()
                self.stop.wait(pause)
                continue
            if not deliveries:
                self.stop.wait(idle)
                idle = min(idle * 2, poll)
                continue
            idle = MIN_IDLE
            try:
                slow = self.process(deliveries)
            except Exception:  # a bug of ours must not loop a process to death
                logger.exception("Unexpected error while processing a batch; its unsettled "
                                 "messages go back to the queue, counted as deliveries")
                try:  # counted, so a message that always trips this ends as a poison message
                    self.broker.release(deliveries, count=True)
                except Exception:  # noqa: BLE001 - the leases will lapse instead
                    connections.close_all()
                slow = True
            batch = 1 if slow else min(batch * 2, self.prefetch)

    def process(self, deliveries: Sequence[Delivery]) -> bool:
        """Run one batch; return True if a task in it was slow."""
        deliveries = self._isolate_suspect(deliveries)
        self._default_limits = limits.defaults()  # settings read once a batch, not a task
        prepared = prepare(deliveries, self.store)
        pending: list[Settlement] = []
        started = last_flush = time.monotonic()
        slow = False
        for index, item in enumerate(prepared):
            if index and (self.stop.is_set() or self.recycler.triggered.is_set()
                          or time.monotonic() - started > HOLD_SECONDS):
                self.flush(pending)
                self.broker.release([p.delivery for p in prepared[index:]], count=False)
                return True
            settlement, took = self._handle(item, pending)
            slow = slow or took > SLOW_TASK_SECONDS
            if settlement is not None:
                pending.append(settlement)
            if time.monotonic() - last_flush > FLUSH_SECONDS:
                self.flush(pending)
                last_flush = time.monotonic()
        self.flush(pending)
        return slow

    def _isolate_suspect(self, deliveries: Sequence[Delivery]) -> Sequence[Delivery]:
        """Run a message that was delivered before without being settled on its own.

        Its last holder died or froze, perhaps because of it. Whatever else this process
        held while it ran would be counted as delivered too if it kills this process as well,
        and could end as a poison message without ever having run; so the rest of the batch
        goes back to the queue, uncounted, first.
        """
        if len(deliveries) < 2:
            return deliveries
        suspect = next((d for d in deliveries if d.deliveries > 1), None)
        if suspect is None:
            return deliveries
        self.broker.release([d for d in deliveries if d is not suspect], count=False)
        return [suspect]

    def _handle(self, item: Prepared, pending: list[Settlement]) -> tuple[Settlement | None, float]:
        settlement = check(item, self.hostname)
        if settlement is not None:
            return settlement, 0.0
        task, message = item.task, item.message
        assert task is not None and message is not None
        acked_early = not task.acks_late
        if acked_early:  # at most once: the ack is durable before the task starts
            self.flush(pending)
            self.broker.ack([item.delivery])
        track = task.track_started if task.track_started is not None \
            else task_settings.TRACK_STARTED
        if track and self.store is not None and not message.ignore_result:
            self.flush(pending)
            from ..result import TaskOutcome
            from ..task import utcnow

            self.store.mark_started([TaskOutcome(
                task_id=message.id, task_name=message.task, state="STARTED",
                args=message.args, kwargs=message.kwargs, queue=message.queue,
                worker=self.hostname, attempts=item.delivery.deliveries,
                retries=message.retries, started_at=utcnow())])
        soft, hard = limits.resolve(task, message, self._default_limits)
        began = time.monotonic()
        self.slot.set(Running(
            str(item.delivery.tag), message.id, message.task, item.delivery.queue,
            item.delivery.deliveries, message.retries, time.time(), hard or 0.0,
            began + hard if hard else 0.0))
        in_thread = hard if self.hard_limit_in_thread else None
        guard = None
        in_loop: tuple[float | None, float | None] = (None, None)
        if task.is_async:  # its event loop cancels it (see aio.py)
            in_loop = (soft, in_thread)
        elif soft or in_thread:
            guard = limits.enforced(f"{message.task}[{message.id}]", soft, in_thread)
        try:
            settlement = execute(item, self.hostname, guard, in_loop)
        finally:
            self.slot.clear()
            connections.refresh()
        took = time.monotonic() - began
        self.recycler.after_task()
        if acked_early:
            settlement.delivery = _ACKED
            if settlement.retry is not None:  # the message is gone: publish the retry anew
                self.broker.publish([settlement.retry])
                settlement.retry = None
        return settlement, took

    def flush(self, pending: list[Settlement]) -> None:
        """Store outcomes, then ack (result before ack), emptying ``pending``."""
        if not pending:
            return
        outcomes = [s.outcome for s in pending if s.outcome is not None and s.outcome.task_id]
        acks = [s.delivery for s in pending if s.retry is None and s.delivery is not _ACKED]
        retries = [s for s in pending if s.retry is not None]
        for attempt in range(5):
            try:
                scope: Any = transaction.atomic(using=self._atomic) if self._atomic \
                    else nullcontext()
                with scope:
                    if outcomes and self.store is not None:
                        self.store.store_outcomes(outcomes)
                    for s in retries:
                        assert s.retry is not None
                        self.broker.requeue(s.delivery, s.retry, s.retry_delay)
                    if acks:
                        self.broker.ack(acks)
                break
            except Exception as exc:  # noqa: BLE001 - keep the worker alive; retry, then hand back
                logger.warning("Cannot record %d outcomes (%s); attempt %d of 5",
                               len(outcomes), exc, attempt + 1)
                connections.close_all()
                time.sleep(0.2 * 2 ** attempt)
        else:
            logger.error("Gave up recording %d outcomes; their messages go back to the queue "
                         "once the broker answers again.", len(outcomes))
            self._unsettled.extend(acks)
            self._unsettled.extend(s.delivery for s in retries)
        pending.clear()


_ACKED: Any = Delivery(tag=None, body="", queue="", deliveries=0, owner="")
