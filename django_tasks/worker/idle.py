"""Idle consumers of one worker take turns to look at empty queues.

A worker with eight processes on idle queues must not ask the broker eight times as often as
one with a single process: the consumers share one :class:`LookTurns`, so that at most one of
them looks at a time, and the pause between two looks grows from 1 ms to its longest value
(one second by default) while the queues stay empty. A look that finds messages ends the
pause for every consumer: they all look again at once. A broker that can wake consumers
(PostgreSQL's ``NOTIFY``, Redis) wakes them between turns; the turns then only bound how often
delays that came due and lapsed leases are looked for.

On PostgreSQL every idle process of a worker hears each publish's notification; a publish
says how many due messages it queued (``notify.wake()``), and the processes share that out
(:meth:`LookTurns.share`): the first to hear it claims up to its batch, the next only what is
left, and the others go back to waiting without a query. So one message published to an idle
``-c 8`` worker costs one claim, not eight.

After a look that found nothing, the consumer asks the broker when the next delayed message
comes due (or a lease runs out: ``Broker.next_due``) and notes it here (:meth:`LookTurns.expect`);
one consumer looks again at that moment (:meth:`LookTurns.take_due`), so a countdown or eta task
starts on time on an idle worker rather than on the next turn, up to a second later.

The numbers live in shared memory allocated before the ``prefork`` pool forks, so its
processes share them as the ``threads`` pool's threads do.
"""

from __future__ import annotations

import multiprocessing
import time
from typing import Any

#: The first pause after a look that found nothing, in seconds; it doubles after each.
FIRST_PAUSE = 0.001
_NEXT, _PAUSE, _DUE = 0, 1, 2
#: The wake-ups being shared out: the last this many publishes heard (key, messages left).
WAKES = 32


class LookTurns:
    """When the next look at the queues is due, shared by the consumers of one worker."""

    def __init__(self) -> None:
        # [monotonic time the next look is due, the pause after the last empty look, the
        # monotonic time the broker said a message comes due (0.0: none known)]
        self._shared: Any = multiprocessing.Array("d", [0.0, FIRST_PAUSE, 0.0])
        # [the slot to write next, then per wake-up: its key, the messages nobody claimed]
        self._wakes: Any = multiprocessing.Array("q", 1 + 2 * WAKES)

    def share(self, payload: str, batch: int) -> bool:
        """A publish's wake-up (its notification's ``payload``) heard by a consumer that
        would claim up to ``batch`` messages: True if this consumer claims (the first to
        hear it, or a later one while its messages outnumber the batches claimed before),
        False if the consumers that heard it first claim them all. A payload that counts
        nothing (a wake-up that is not a publish's) wakes every consumer."""
        from ..notify import read_wake

        wake = read_wake(payload)
        if wake is None:
            return True
        key, count = wake
        key |= 1 << 48  # never 0, which marks an empty slot
        with self._wakes.get_lock():
            slots = self._wakes
            for index in range(1, 1 + 2 * WAKES, 2):
                if slots[index] == key:
                    if slots[index + 1] <= 0:
                        return False
                    slots[index + 1] -= batch
                    return True
            index = 1 + 2 * slots[0]  # the oldest slot: its publish is long claimed
            slots[0] = (slots[0] + 1) % WAKES
            slots[index], slots[index + 1] = key, count - batch
            return True

    def take(self, longest: float) -> float:
        """Take the turn if it is due: 0.0, and no other consumer looks for the next
        ``longest`` seconds unless this one reports. Otherwise the seconds until it is due."""
        with self._shared.get_lock():
            now = time.monotonic()
            wait = self._shared[_NEXT] - now
            if wait > 0:
                return wait
            self._shared[_NEXT] = now + longest  # held while this consumer looks
            return 0.0

    def expect(self, at: float | None) -> None:
        """The broker's latest answer to when a message comes due (``time.monotonic()``), or
        None: none is waiting. It replaces the one before, which another look may have
        claimed."""
        with self._shared.get_lock():
            self._shared[_DUE] = 0.0 if at is None else max(at, 1e-9)

    def take_due(self) -> float | None:
        """0.0 if the expected message is due now, for one consumer only (it looks; the
        others wait for the next answer); else the seconds until then, or None when none
        is expected."""
        with self._shared.get_lock():
            at = self._shared[_DUE]
            if not at:
                return None
            wait = at - time.monotonic()
            if wait > 0:
                return wait
            self._shared[_DUE] = 0.0
            return 0.0

    def found_nothing(self, longest: float, *, double: bool = True) -> None:
        """The look found no message: the next is due after the current pause, which
        doubles up to ``longest`` (or is ``longest`` at once, where the broker wakes)."""
        with self._shared.get_lock():
            pause = min(self._shared[_PAUSE], longest) if double else longest
            self._shared[_NEXT] = time.monotonic() + pause
            self._shared[_PAUSE] = min(pause * 2, longest)

    def found_work(self) -> None:
        """The look found messages (or a broker said some are ready): every consumer may
        look at once, and the pauses start again from the shortest."""
        with self._shared.get_lock():
            self._shared[_NEXT] = 0.0
            self._shared[_PAUSE] = FIRST_PAUSE
