"""SIGTERM and SIGINT, counted: the first asks for a warm shutdown, the second for a cold one."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

logger = logging.getLogger("django_tasks.process")


class Signals:
    """Counts SIGTERM/SIGINT; the process's main loop polls ``count`` or waits on ``stop``."""

    def __init__(self) -> None:
        self.count = 0
        self.stop = threading.Event()

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self.handle)
        signal.signal(signal.SIGINT, self.handle)

    def handle(self, signum: int, frame: Any) -> None:
        self.count += 1
        self.stop.set()
        kind = "warm" if self.count == 1 else "cold"
        logger.warning("%s received: %s shutdown", signal.Signals(signum).name, kind)
