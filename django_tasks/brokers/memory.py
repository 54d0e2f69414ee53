"""An in-process broker for unit tests: same contract, no I/O."""

from __future__ import annotations

import datetime as dt
import itertools
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.db import transaction

from .. import clock
from ..message import Message
from .base import Broker, Delivery


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


def _now() -> dt.datetime:
    return clock.now()


class MemoryBroker(Broker):
    def __init__(self, url: str = "memory://") -> None:
        super().__init__(url)
        self._rows: dict[int, _Row] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

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

    def fetch(self, queues: Sequence[str], owner: str, limit: int,
              lease: float) -> list[Delivery]:
        now = _now()
        with self._lock:
            due = sorted(
                (r for r in self._rows.values() if r.queue in queues and r.visible_at <= now),
                key=lambda r: (-r.priority, r.visible_at, r.id),
            )[:limit]
            for row in due:
                row.owner, row.deliveries = owner, row.deliveries + 1
                row.visible_at = now + dt.timedelta(seconds=lease)
            # Within a batch, the order the database broker hands out: priority, then age.
            due.sort(key=lambda r: (-r.priority, r.id))
            return [Delivery(r.id, r.body, r.queue, r.deliveries, owner, r.task_id)
                    for r in due]

    def ack(self, deliveries: Iterable[Delivery]) -> None:
        with self._lock:
            for d in deliveries:
                self._rows.pop(d.tag, None)  # type: ignore[call-overload]

    def release(self, deliveries: Iterable[Delivery], *, count: bool = False) -> None:
        with self._lock:
            for d in deliveries:
                row = self._rows.get(d.tag)  # type: ignore[call-overload]
                if row is not None:
                    row.owner, row.visible_at = None, _now()
                    if not count:
                        row.deliveries = max(0, row.deliveries - 1)

    def release_owner(self, owner: str, *, keep_count: Iterable[object] = ()) -> int:
        keep = set(keep_count)
        with self._lock:
            held = [r for r in self._rows.values() if r.owner == owner]
            for row in held:
                row.owner, row.visible_at = None, _now()
                if row.id not in keep:
                    row.deliveries = max(0, row.deliveries - 1)
            return len(held)

    def requeue(self, delivery: Delivery, message: Message, delay: float) -> None:
        body = message.encode()
        with self._lock:
            self._rows.pop(delivery.tag, None)  # type: ignore[call-overload]
            row_id = next(self._ids)
            self._rows[row_id] = _Row(row_id, message.queue, message.priority, body,
                                      _now() + dt.timedelta(seconds=delay), message.id)

    def renew(self, owners: Sequence[str], lease: float) -> int:
        until = _now() + dt.timedelta(seconds=lease)
        with self._lock:
            held = [r for r in self._rows.values() if r.owner in owners]
            for row in held:
                row.visible_at = until
            return len(held)

    def depths(self, queues: Sequence[str] | None = None) -> dict[str, int]:
        with self._lock:
            counts: dict[str, int] = {q: 0 for q in queues or ()}
            for row in self._rows.values():
                if queues is None or row.queue in queues:
                    counts[row.queue] = counts.get(row.queue, 0) + 1
            return counts

    def purge(self, queue: str) -> int:
        with self._lock:
            doomed = [k for k, r in self._rows.items() if r.queue == queue]
            for key in doomed:
                del self._rows[key]
            return len(doomed)
