"""Rate limits for the whole cluster, as the kernel's first ``before`` hook.

A message of a rate-limited task takes the next slot of its task's shared bucket
(``brokers/buckets.py``). A slot that is free now lets it run at once; a later one sends the
delivery back to the broker, delayed until the slot and carrying the slot's time in a header:
not counted as a delivery, not a retry, and holding no pool slot meanwhile. When it comes
back at its time, it runs without taking another slot (unless the task's rate changed
meanwhile: each rate has a bucket of its own, and a slot of another rate does not count).
Slots are handed out one interval apart, so however many workers take them, the task starts
no faster than its rate.

A message that comes back more than ``LATE_SECONDS`` (or one interval, if longer) after its
slot (the workers were busy, or stopped) takes a new slot, so that a pile of late messages
does not start at once: in any window of ``w`` seconds at most ``rate * (w + lateness) + 1``
start, where lateness is at most that grace.
"""

from __future__ import annotations

import bisect
import logging
import time
from typing import TYPE_CHECKING

from .. import clock
from ..kernel import Hook, Run
from ..ratelimit import INTERVAL_HEADER, SLOT_HEADER, bucket_name, rate_of
from .settle import Settlement

if TYPE_CHECKING:
    from ..brokers.buckets import RateBuckets
    from .consumer import Consumer

logger = logging.getLogger("django_tasks.worker")
#: A slot this close ahead is taken as now.
EARLY_SECONDS = 0.002
#: How late a message may come back to its slot and still run on it.
LATE_SECONDS = 2.0
#: Slot times a consumer remembers, to wake for them when idle.
KEEP_DUE = 10_000
#: An idle consumer looks this long after a slot: the broker's due time for the message is
#: a few microseconds past the slot (it counts the delay from when it writes), and a look
#: that comes too early finds nothing and waits for the next slot.
WAKE_AFTER_SECONDS = 0.002


class RateLimit(Hook):
    """Runs a rate-limited task at its slot of the shared bucket; defers it until then."""

    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer

    def before(self, run: Run) -> bool | None:
        rate = rate_of(run.task)
        if rate is None:
            return None
        message = run.message
        interval = 1.0 / rate
        now = clock.now().timestamp()
        held = message.headers.get(SLOT_HEADER)
        if isinstance(held, int | float) and not isinstance(held, bool) \
                and message.headers.get(INTERVAL_HEADER) == interval:
            if held - EARLY_SECONDS <= now <= held + max(LATE_SECONDS, interval):
                self._forget_slot(run)
                return None
            slot = float(held) if now < held else self._reserve(run, interval, now)
        else:
            slot = self._reserve(run, interval, now)
        if slot - now <= EARLY_SECONDS:
            self._forget_slot(run)
            return None
        deferred = message.replace(headers={**message.headers, SLOT_HEADER: slot,
                                            INTERVAL_HEADER: interval})
        consumer = self.consumer
        consumer._pending.append(Settlement(run.item.delivery, retry=deferred,
                                            retry_delay=slot - now, label=run.label,
                                            defer_until=slot))
        consumer.due.add(time.monotonic() + (slot - now) + WAKE_AFTER_SECONDS)
        logger.debug("Task %s waits %.3fs for its rate limit slot", run.label, slot - now)
        return False

    def _reserve(self, run: Run, interval: float, now: float) -> float:
        buckets: RateBuckets = self.consumer.broker.rate_buckets()
        try:
            return buckets.reserve(bucket_name(run.message.task, interval), interval, now)
        except Exception as exc:
            self.consumer._away(exc)  # the database went away: hand the batch back
            raise

    @staticmethod
    def _forget_slot(run: Run) -> None:
        """The task runs: its retries and follow-ups must not carry the slot along."""
        message = run.message
        if SLOT_HEADER in message.headers or INTERVAL_HEADER in message.headers:
            headers = {k: v for k, v in message.headers.items()
                       if k not in (SLOT_HEADER, INTERVAL_HEADER)}
            run.message = message.replace(headers=headers)
            if run.request is not None:
                run.request.headers = headers


class DueTimes:
    """When messages this consumer deferred come due (``time.monotonic()``): an idle
    consumer looks at its queues then, instead of waiting for its next turn."""

    def __init__(self) -> None:
        self._times: list[float] = []

    def add(self, at: float) -> None:
        if len(self._times) < KEEP_DUE:
            bisect.insort(self._times, at)

    def seconds(self) -> float | None:
        """Seconds until the next one; 0.0 once for those that came due (they are then
        forgotten); None when none is left."""
        now = time.monotonic()
        index = bisect.bisect_right(self._times, now)
        if index:
            del self._times[:index]
            return 0.0
        return self._times[0] - now if self._times else None
