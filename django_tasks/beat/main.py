"""``Beat``: settings and options in, the schedule loop out (``manage.py taskbeat``).

A beat takes its name in the liveness table (kind ``beat``), syncs ``TASKS_BEAT_SCHEDULE``
into the database, and ticks every ``tick`` seconds until SIGTERM (a warm shutdown: the
tick in progress finishes) or a second signal (at once: an unfinished tick's transaction
is rolled back, so nothing is queued twice or lost). Its stall watchdog and health file are
the worker's (``process/stall.py``): a tick that has not completed for the stall timeout
makes it exit with status 4.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO

from .. import clock
from ..conf import get_broker, mask_url, task_settings
from ..message import name_error
from ..process import connections, liveness, logs
from ..process.signals import Signals
from ..process.stall import StallWatch
from .scheduler import Scheduler, TickReport
from .sync import sync

logger = logging.getLogger("django_tasks.beat")


class StopFlag(Protocol):
    def is_set(self) -> bool: ...
    def wait(self, timeout: float | None = None) -> bool: ...


@dataclass
class Beat:
    """A scheduler process with its options; ``run()`` blocks until shutdown."""

    hostname: str = ""
    tick: float = field(default_factory=lambda: float(task_settings.BEAT_TICK_SECONDS))
    loglevel: str = "INFO"
    out: TextIO = field(default_factory=lambda: sys.stdout)
    heartbeat: float = field(default_factory=lambda: float(task_settings.HEARTBEAT_SECONDS))
    stall_timeout: float | None = field(
        default_factory=lambda: task_settings.WORKER_STALL_TIMEOUT)
    health_file: str | None = None

    def __post_init__(self) -> None:
        from ..worker.main import expand_hostname

        if not (isinstance(self.tick, int | float) and 0 < self.tick <= 60):
            raise ValueError(f"--tick must be a number of seconds from 0 to 60, not "
                             f"{self.tick!r}")
        self.hostname = expand_hostname(self.hostname or f"beat{os.getpid()}@%h")
        if problem := name_error(self.hostname, "--hostname"):
            raise ValueError(problem)

    @property
    def alias(self) -> str:
        """Schedules, slots and the liveness row live beside the queue (``django://``)."""
        return get_broker().home_alias

    def identity(self) -> liveness.Identity:
        return liveness.Identity(hostname=self.hostname, kind="beat", pool="beat",
                                 heartbeat=self.heartbeat, stale_after=3 * self.heartbeat,
                                 startup_wait=self.stall_timeout, alias=self.alias)

    def run(self) -> int:
        """Schedule until shutdown; return the exit code."""
        logs.configure(self.loglevel)
        identity = self.identity()
        liveness.register(identity)
        report = sync(task_settings.BEAT_SCHEDULE, self.alias)
        self.banner(report.created + report.updated)
        sigs = Signals()
        sigs.install()
        original = sigs.handle

        def handle(signum: int, frame: Any) -> None:
            original(signum, frame)
            if sigs.count >= 2:  # cold: leave now; the tick's transaction rolls back
                logs.flush()
                os._exit(0)

        import signal

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)
        loop = BeatLoop(self, Scheduler(self.hostname, self.alias), sigs.stop)
        watch = StallWatch(self.stall_timeout, loop.entries, health_file=self.health_file,
                           hostname=self.hostname, what="Beat",
                           progress_is="completed a tick").start()
        try:
            loop.run(on_beat=lambda: _touch(identity, watch))
        finally:
            watch.stop()
            liveness.goodbye(identity)
            connections.close_all()
            logger.info("Beat %s stopped", self.hostname)
        return 0

    def banner(self, synced: list[str]) -> None:
        from ..models import PeriodicTask
        from ..schedules.zones import default_zone

        enabled = PeriodicTask.objects.using(self.alias).filter(enabled=True).count()
        lines = [
            f" -------------- {self.hostname} (taskbeat)",
            f" .> transport:   {mask_url(get_broker().url)}",
            f" .> schedules:   {enabled} enabled in database {self.alias!r}"
            + (f"; {len(synced)} synced from TASKS_BEAT_SCHEDULE" if synced else ""),
            f" .> time zone:   {default_zone().key} (crontabs without a zone of their own)",
            f" .> tick:        every {self.tick:g}s",
            "",
        ]
        self.out.write("\n".join(lines) + "\n")
        self.out.flush()


def _touch(identity: liveness.Identity, watch: StallWatch) -> None:
    liveness.touch(identity)
    watch.beat_ok()


class BeatLoop:
    """Ticks until ``stop`` is set; also what ``taskworker --beat`` runs in the worker."""

    def __init__(self, beat: Beat, scheduler: Scheduler, stop: StopFlag) -> None:
        self.beat = beat
        self.scheduler = scheduler
        self.stop = stop
        self.progress = time.monotonic()
        self.last: TickReport | None = None
        #: Called after each completed tick (a prefork child marks its shared slot).
        self.on_progress: Any = None

    def entries(self) -> list[tuple[str, float, object | None]]:
        return [("the schedule loop", self.progress, None)]

    def run(self, on_beat: Any = None) -> None:
        failures, next_beat = 0, 0.0
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                connections.refresh()
                self.last = self.scheduler.tick()
                self.progress = time.monotonic()
                if self.on_progress is not None:
                    self.on_progress()
                failures = 0
            except Exception as exc:  # noqa: BLE001 - the database may be briefly away
                failures += 1
                pause = min(0.5 * 2 ** failures, 10.0)
                logger.warning("Tick failed (%s: %s); trying again in %.1fs",
                               type(exc).__name__, exc, pause)
                connections.close_all()
                self.stop.wait(pause)
                continue
            if on_beat is not None and time.monotonic() >= next_beat:
                try:
                    on_beat()
                except Exception as exc:  # noqa: BLE001 - retried on the next beat
                    logger.warning("Heartbeat failed (%s)", exc)
                    connections.close_all()
                next_beat = time.monotonic() + self.beat.heartbeat
            self.stop.wait(self._pause(started))

    def _pause(self, started: float) -> float:
        """Until the next tick, or sooner when a run falls due before it: a run is queued
        within milliseconds of its time, and an edit is still seen within a tick."""
        pause = max(0.0, self.beat.tick - (time.monotonic() - started))
        try:
            due = self.scheduler.next_due()
        except Exception:  # noqa: BLE001 - the tick will report a database that is away
            return pause
        if due is None:
            return pause
        return min(pause, max(0.0, (due - clock.now()).total_seconds()) + 0.001)


def embedded(hostname: str, stop: StopFlag | None = None) -> BeatLoop:
    """The schedule loop a worker runs with ``--beat`` (no liveness row of its own: the
    worker's says it lives; exactly once holds as with any other beat)."""
    beat = Beat(hostname=f"{hostname}-beat", stall_timeout=None)
    sync(task_settings.BEAT_SCHEDULE, beat.alias)
    return BeatLoop(beat, Scheduler(beat.hostname, beat.alias), stop or threading.Event())

