"""A message that comes back after its holder died runs alone in its process.

Such a message (a *suspect*: delivered before and never settled) may be what killed that
holder. Its consumer records its start in the broker before running it, so that if it kills
this process too, its ``runs`` go up and the poison limit ends it. Any other task running in
the same process when it does is cut short too, and comes back a suspect itself; if it keeps
running beside the poison, it reaches the limit as well, without having done anything wrong.

In ``prefork`` and ``solo`` each process has one consumer, which hands the rest of its batch
back before a suspect runs (``Consumer._isolate_suspect``). The ``threads`` pool runs several
consumers in one process, so they share an :class:`Alone`: a suspect waits for the tasks the
other threads are running to end, and they start nothing while it runs. Both waits are
bounded by :data:`ALONE_SECONDS`, so that a long task on either side holds the others back
for no longer than that: after it, they run side by side as before. A suspect's outcome is
written before it lets the others go (``Consumer._handle``): were the next suspect a poison,
an outcome still waiting in its thread would die with the process, and the suspect that had
finished would count as running at that death too.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

#: How long a suspect waits for the tasks running beside it to end, and how long, once it
#: runs, the other threads start nothing beside it.
ALONE_SECONDS = 10.0


class Alone:
    """What the consumer threads of one process share to let a suspect run alone."""

    def __init__(self, seconds: float = ALONE_SECONDS) -> None:
        self.seconds = seconds
        self._cond = threading.Condition()
        self._ordinary = 0  # ordinary tasks running
        self._suspects = 0  # suspects waiting to run, or running
        self._running = 0  # suspects running
        self._hold_until = 0.0  # no ordinary task starts before this (while a suspect is here)

    def _hold(self, until: float) -> None:
        self._hold_until = max(self._hold_until, until)

    @contextmanager
    def beside(self) -> Iterator[None]:
        """Around an ordinary task: it does not start while a suspect waits or runs, for
        up to ``seconds`` after that suspect came or started."""
        with self._cond:
            while self._suspects and (left := self._hold_until - time.monotonic()) > 0:
                self._cond.wait(left)
            self._ordinary += 1
        try:
            yield
        finally:
            with self._cond:
                self._ordinary -= 1
                self._cond.notify_all()

    @contextmanager
    def alone(self) -> Iterator[None]:
        """Around a suspect: it starts once nothing else runs in the process, or after
        ``seconds`` of waiting for that; nothing else starts for ``seconds`` after."""
        started = False
        with self._cond:
            self._suspects += 1
        try:  # an exception raised into the wait (a cold shutdown) leaves the counts right
            with self._cond:
                deadline = time.monotonic() + self.seconds
                self._hold(deadline)
                while (self._ordinary or self._running) and \
                        (left := deadline - time.monotonic()) > 0:
                    self._cond.wait(left)
                self._running += 1
                started = True
                self._hold(time.monotonic() + self.seconds)
            yield
        finally:
            with self._cond:
                self._running -= started
                self._suspects -= 1
                if not self._suspects:
                    self._hold_until = 0.0
                self._cond.notify_all()

    def state(self) -> tuple[int, int, int]:
        """(ordinary tasks running, suspects waiting or running, suspects running)."""
        with self._cond:
            return self._ordinary, self._suspects, self._running
