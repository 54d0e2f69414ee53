"""Idle consumers of one worker take turns to look at empty queues.

A worker with eight processes on idle queues must not ask the broker eight times as often as
one with a single process: the consumers share one :class:`LookTurns`, so that at most one of
them looks at a time, and the pause between two looks grows from 1 ms to its longest value
(one second by default) while the queues stay empty. A look that finds messages ends the
pause for every consumer: they all look again at once. A broker that can wake consumers
(PostgreSQL's ``NOTIFY``, Redis) wakes them between turns; the turns then only bound how often
delays that came due and lapsed leases are looked for.

The two numbers live in shared memory allocated before the ``prefork`` pool forks, so its
processes share them as the ``threads`` pool's threads do.
"""

from __future__ import annotations

import multiprocessing
import time
from typing import Any

#: The first pause after a look that found nothing, in seconds; it doubles after each.
FIRST_PAUSE = 0.001
_NEXT, _PAUSE = 0, 1


class LookTurns:
    """When the next look at the queues is due, shared by the consumers of one worker."""

    def __init__(self) -> None:
        # [monotonic time the next look is due, the pause after the last empty look]
        self._shared: Any = multiprocessing.Array("d", [0.0, FIRST_PAUSE])

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
