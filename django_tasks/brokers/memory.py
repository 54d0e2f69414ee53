"""An in-process broker for unit tests: same contract, no I/O."""

from __future__ import annotations

import datetime as dt
import itertools
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar

from django.db import transaction

from .. import clock
from ..message import Message
from .base import Broker, Capabilities, Delivery, Purged, QueueCounts, new_token
from .buckets import MemoryBuckets, RateBuckets


@dataclass
class _Row:
    id: int
    queue: str
    priority: int
    body: str
    visible_at: dt.datetime
    task_id: str = ""
    owner: str | None = None
    deliveries: int = 0
    token: int | None = None
    runs: int = 0


def _now() -> dt.datetime:
    return clock.now()


class MemoryBroker(Broker):
    """Messages in this process only, for tests: the database broker's leases, fencing and
    counts; a message published in a transaction appears at its commit (``on_commit``).
    It needs no outbox: its messages live and die with the process anyway."""

    capabilities: ClassVar[Capabilities] = Capabilities(durable=False)

    def __init__(self, url: str = "memory://") -> None:
        super().__init__(url)
        self._rows: dict[int, _Row] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._buckets = MemoryBuckets()

    def publish(self, messages: Sequence[Message]) -> None:
        encoded = [(m, m.encode()) for m in messages]

        def put() -> None:
            with self._lock:
                for message, body in encoded:
                    row_id = next(self._ids)
                    self._rows[row_id] = _Row(row_id, message.queue, message.priority, body,
                                              message.eta or _now(), message.id)

        # Like the database broker: nothing is visible before the caller's commit.
        if transaction.get_connection().in_atomic_block:
            transaction.on_commit(put)
        else:
            put()

    def fetch(self, queues: Sequence[str], owner: str, limit: int, lease: float, *,
              look: str | None = None) -> list[Delivery]:
        now = _now()
        token = new_token()
        with self._lock:
            due = sorted(
                (r for r in self._rows.values() if r.queue in queues and r.visible_at <= now),
                key=lambda r: (-r.priority, r.visible_at, r.id),
            )[:limit]
            for row in due:
                row.owner, row.token, row.deliveries = owner, token, row.deliveries + 1
                row.visible_at = now + dt.timedelta(seconds=lease)
            # Within a batch, the order the database broker hands out: priority, then age.
            due.sort(key=lambda r: (-r.priority, r.id))
            return [Delivery(r.id, r.body, r.queue, r.deliveries, owner, r.task_id, token, r.runs)
                    for r in due]

    def next_due(self, queues: Sequence[str], since: dt.datetime) -> float | None:
        with self._lock:
            later = [r.visible_at for r in self._rows.values()
                     if r.queue in queues and r.visible_at > since]
        return (min(later) - _now()).total_seconds() if later else None

    def _held(self, delivery: Delivery) -> _Row | None:
        """The row of ``delivery`` while its lease is current (call with the lock held)."""
        row = self._rows.get(delivery.tag)
        return row if row is not None and row.token == delivery.token else None

    def ack(self, deliveries: Iterable[Delivery]) -> list[Delivery]:
        with self._lock:
            acked = [d for d in deliveries if self._held(d) is not None]
            for d in acked:
                del self._rows[d.tag]
            return acked

    def release(self, deliveries: Iterable[Delivery], *, count: bool = False) -> int:
        released = 0
        with self._lock:
            for d in deliveries:
                row = self._held(d)
                if row is not None:
                    self._free(row, uncount=not count)
                    released += 1
        return released

    @staticmethod
    def _free(row: _Row, *, uncount: bool) -> None:
        row.owner, row.token, row.visible_at = None, None, _now()
        if uncount:
            row.deliveries = max(0, row.deliveries - 1)

    def release_owner(self, owner: str, *, keep_count: Iterable[int] = (),
                      count_all: bool = False, died_running: Iterable[int] = ()) -> int:
        keep, died = set(keep_count), set(died_running)
        with self._lock:
            held = [r for r in self._rows.values() if r.owner == owner]
            for row in held:
                row.runs += row.id in died
                self._free(row, uncount=not count_all and row.id not in keep)
            return len(held)

    def requeue(self, delivery: Delivery, message: Message, delay: float) -> bool:
        body = message.encode()
        with self._lock:
            if self._held(delivery) is None:
                return False
            del self._rows[delivery.tag]
            row_id = next(self._ids)
            self._rows[row_id] = _Row(row_id, message.queue, message.priority, body,
                                      _now() + dt.timedelta(seconds=delay), message.id)
            return True

    def defer(self, delivery: Delivery, message: Message, delay: float) -> bool:
        body = message.encode()
        with self._lock:
            row = self._held(delivery)
            if row is None:
                return False
            self._free(row, uncount=True)
            row.body, row.visible_at = body, _now() + dt.timedelta(seconds=max(delay, 0))
            return True

    def rate_buckets(self) -> RateBuckets:
        return self._buckets

    def record_start(self, delivery: Delivery) -> bool:
        with self._lock:
            row = self._held(delivery)
            if row is not None:
                row.runs += 1
            return row is not None

    def renew(self, owners: Sequence[str], lease: float) -> int:
        until = _now() + dt.timedelta(seconds=lease)
        with self._lock:
            held = [r for r in self._rows.values() if r.owner in owners]
            for row in held:
                row.visible_at = until
            return len(held)

    def confirm(self, deliveries: Sequence[Delivery], lease: float) -> list[Delivery]:
        until = _now() + dt.timedelta(seconds=lease)
        with self._lock:
            current = [d for d in deliveries if self._held(d) is not None]
            for d in current:
                self._rows[d.tag].visible_at = until
            return current

    def depths(self, queues: Sequence[str] | None = None) -> dict[str, int]:
        with self._lock:
            counts: dict[str, int] = {q: 0 for q in queues or ()}
            for row in self._rows.values():
                if queues is None or row.queue in queues:
                    counts[row.queue] = counts.get(row.queue, 0) + 1
            return counts

    def queue_counts(self, queues: Sequence[str] = ()) -> dict[str, QueueCounts]:
        now = _now()
        counts = {queue: [0, 0, 0] for queue in queues}
        with self._lock:
            for row in self._rows.values():
                # Due (a lease that ran out included), not due yet, or leased now.
                where = 0 if row.visible_at <= now else 1 if row.owner is None else 2
                counts.setdefault(row.queue, [0, 0, 0])[where] += 1
        return {queue: QueueCounts(*n) for queue, n in counts.items()}

    def purge(self, queue: str) -> Purged:
        with self._lock:
            doomed = [k for k, r in self._rows.items() if r.queue == queue]
            task_ids = tuple(self._rows.pop(key).task_id for key in doomed)
            return Purged(len(doomed), task_ids)
