"""The next batch's fetch, sent while a batch of quick tasks runs.

On a broker that answers a fetch later than it is sent (``capabilities.pipelined``:
Redis), a consumer that waits for each fetch leaves its CPU idle while the broker claims:
a drain of no-op tasks at -c 2 spent about a fifth of each pool process's time waiting for
Redis to run its fetch script. So a consumer running a batch of at least ``AHEAD_BATCH``
quick tasks sends the next fetch once the rest of the batch is expected to take no more
than ``AHEAD_SECONDS``, and runs on while Redis answers.

The answer is read as soon as it has come (looked for between tasks), and its deliveries
are listed in the consumer's slot behind the batch's: should a task of the batch then run
long, the supervisor hands them back with the rest of the batch (``give_back_waiting``),
as it does with a batch's own deliveries. Only a task that starts in the moments while the
fetch is on its way and then runs long keeps the next batch waiting behind it, unlisted.
The leases are the consumer's from the time the fetch is sent: the heartbeat renews them
with the rest, and a consumer that dies or stops hands them back uncounted.
"""

from __future__ import annotations

import datetime as dt
import time

from .. import clock
from ..brokers.base import Delivery, PendingFetch
from .slots import Slot

#: A batch this long or longer (the batch grows only while tasks are quick) fetches ahead.
AHEAD_BATCH = 16
#: The next fetch is sent once the rest of the batch is expected to take this long or less:
#: time enough for the broker to answer while the CPUs it shares are busy.
AHEAD_SECONDS = 0.02
#: Between tasks, whether the answer has come is looked at no more often than this.
LOOK_SECONDS = 0.0005


class Ahead:
    """One fetch sent ahead (:meth:`Broker.start_fetch`), asking for ``asked`` messages."""

    def __init__(self, pending: PendingFetch, asked: int) -> None:
        self.pending = pending
        self.asked = asked
        self.sent_at = time.monotonic()
        self.since: dt.datetime = clock.now()
        self._looked = self.sent_at
        self._deliveries: list[Delivery] | None = None
        self._error: Exception | None = None
        self._start: int | None = None  # the index of the first in the slot's list

    def look(self, slot: Slot) -> None:
        """Between tasks: read the answer if it has come, and list its deliveries in
        ``slot`` as waiting to start."""
        if self._deliveries is not None or self._error is not None:
            return
        now = time.monotonic()
        if now - self._looked < LOOK_SECONDS:
            return
        self._looked = now
        if not self.pending.ready():
            return
        deliveries = self._read()
        if deliveries:
            self._start = slot.extend([(d.tag, d.token, d.deliveries) for d in deliveries],
                                      [d.task_id for d in deliveries])

    def unlist(self, slot: Slot) -> None:
        """The batch ends: take the deliveries listed in ``slot`` back from it, leaving out
        those the supervisor handed back meanwhile (they are no longer this consumer's)."""
        if self._start is None or not self._deliveries:
            return
        start, deliveries = self._start, self._deliveries
        self._start = None
        self._deliveries = [deliveries[index - start]
                            for index in slot.take_rest(start, start + len(deliveries))]

    def result(self) -> list[Delivery]:
        """The deliveries, read now if they were not yet; raises what the fetch raised."""
        if self._deliveries is None and self._error is None:
            self._read()
        if self._error is not None:
            raise self._error
        assert self._deliveries is not None
        return self._deliveries

    def _read(self) -> list[Delivery]:
        try:
            self._deliveries = self.pending.result()
        except Exception as exc:  # noqa: BLE001 - raised by result(), as a fetch's would be
            self._error = exc
            return []
        return self._deliveries
