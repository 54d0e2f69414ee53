"""The fault suite's harness: supervised workers, injected faults, execution journals, and
the figures a scenario is judged by.

Vocabulary:

- An **execution** is one run of a task's function, from the start line to the end line the
  suite's tasks write to their journal (``testproject/demo/tasks.py``). A killed process
  leaves a start without an end.
- A **fault** is something the harness did to a worker (SIGKILL, SIGSTOP/SIGCONT, a database
  outage, dropped connections) or a worker's death the harness saw (it exited and was
  restarted, as a process supervisor would).
- **Lost**: a task whose enqueue committed and that did not reach a final state (no row,
  PENDING, STARTED, RETRY), or a queue row left behind.
- **Unexpected**: a task in a final state other than the one expected (a FAILURE where
  SUCCESS was due), a result row or an execution of a task whose enqueue was rolled back,
  a result row for an id nobody queued.
- **Duplicate**: every execution of a task after its first. It is *explained* when the
  execution before it was hit by a fault that allows a second run: it ran in a worker that
  was SIGKILLed or died, or in one frozen or cut off from the database for longer than the
  lease. Otherwise it is *unexplained*, which the contract forbids.
- **Overlap**: two executions of one task running at the same time, neither of them in a
  faulted worker: a task the contract says runs once at a time ran twice at once.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import traceback
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from tests.e2e.conftest import ROOT, TABLES, Worker, group_members

QUEUE = "django_tasks_queuedmessage"
RESULTS = "django_tasks_taskresult"
WORKERS = "django_tasks_workerstate"
FINAL = ("SUCCESS", "FAILURE", "REVOKED")
TASKS = "testproject.demo.tasks"

#: Short leases, so that a fault plays out in seconds (check E005 wants lease >= 2 beats).
LEASE = 3.0
HEARTBEAT = 0.5
MAX_DELIVERIES = 3
FAULT_ENV = {"TASKS_LEASE_SECONDS": str(LEASE), "TASKS_HEARTBEAT_SECONDS": str(HEARTBEAT),
             "TASKS_MAX_DELIVERIES": str(MAX_DELIVERIES)}
TICK = 0.2


class ProjectLike(Protocol):
    """What the scenarios need of ``tests.e2e.conftest.Project``."""

    backend: str
    url: str
    tmp: Path
    workers: list[Worker]
    env: dict[str, str]

    def worker(self, *args: str, hostname: str = "", **env: str) -> Worker: ...
    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]: ...
    def count(self, table: str, where: str = "1 = 1",
              params: tuple[Any, ...] = ()) -> int: ...
    def timestamp(self, moment: dt.datetime) -> Any: ...


# -- scales ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scale:
    """How big each scenario is: ``CI`` is bounded for pytest, ``FULL`` for the runner."""

    name: str
    kill_tasks: int
    kill_task_seconds: float
    kill_every: float
    kill_concurrency: int
    min_kills: int
    poison_innocents: int
    poison_one_at_a_time: bool  # False: os._exit alone, the two that raise together
    freeze_stop: float  # at least this long frozen (and until the other worker succeeded)
    freeze_watch: float  # seconds after SIGCONT to watch for a late outcome
    outage_tasks: int
    outage_task_seconds: float
    outages: tuple[tuple[str, float], ...]
    terminate_tasks: int
    terminate_task_seconds: float
    terminate_times: int
    bad_innocents: int
    bad_task_seconds: float  # each innocent sleeps this long (a steadier throughput)
    bad_baseline: bool  # also drain the innocents alone, to compare throughput
    bad_min_ratio: float  # the bad-row run's throughput over the clean run's, at least
    enqueue_processes: int
    enqueue_threads: int
    enqueue_rounds: int
    patience: float  # seconds without progress before a wait gives up
    cap: float  # seconds a single wait may take at most


# Both scales kill every 2.5 s, off the lease (3 s): a killed worker's messages come back when
# its lease runs out, and with kills 3 s apart that was just before the next kill, so one
# message could be caught running by kill after kill and end, rightly, as poison (three
# deaths) instead of SUCCESS. Seen once in CI.
CI = Scale(
    name="ci", kill_tasks=1000, kill_task_seconds=0.025, kill_every=2.5, kill_concurrency=2,
    min_kills=2, poison_innocents=100, poison_one_at_a_time=False, freeze_stop=8.0,
    freeze_watch=4.0,
    outage_tasks=500, outage_task_seconds=0.01, outages=(("refuse", 5.0), ("blackhole", 5.0)),
    terminate_tasks=500, terminate_task_seconds=0.01, terminate_times=3,
    bad_innocents=300, bad_task_seconds=0.0, bad_baseline=False, bad_min_ratio=0.0,
    enqueue_processes=2, enqueue_threads=3, enqueue_rounds=60,
    patience=15.0, cap=90.0,
)
FULL = Scale(
    name="full", kill_tasks=5000, kill_task_seconds=0.02, kill_every=2.5, kill_concurrency=2,
    min_kills=5, poison_innocents=100, poison_one_at_a_time=True, freeze_stop=8.0,
    freeze_watch=8.0,
    outage_tasks=2000, outage_task_seconds=0.01,
    outages=(("refuse", 10.0), ("refuse", 60.0), ("blackhole", 10.0), ("blackhole", 60.0)),
    terminate_tasks=2000, terminate_task_seconds=0.01, terminate_times=5,
    bad_innocents=1000, bad_task_seconds=0.02, bad_baseline=True, bad_min_ratio=0.95,
    enqueue_processes=3, enqueue_threads=3, enqueue_rounds=120,
    patience=30.0, cap=300.0,
)
SCALES = {"ci": CI, "full": FULL}


# -- the journal ----------------------------------------------------------------------------


@dataclass
class Execution:
    """One run of a task, as its journal lines tell it (times are ``time.time()``)."""

    task_id: str
    pid: int
    thread: int
    hostname: str
    attempt: int
    start: float
    end: float | None = None
    note: str = ""  # the poison's kind, or "fail" for a run that raised on purpose

    def describe(self, origin: float) -> str:
        ended = f"ended +{self.end - origin:.2f}s" if self.end is not None else "never ended"
        return (f"pid {self.pid} (thread ..{self.thread % 100000:05d}) on {self.hostname}, "
                f"attempt {self.attempt}, started "
                f"+{self.start - origin:.2f}s, {ended}{f' ({self.note})' if self.note else ''}")


def read_journal(path: Path) -> list[Execution]:
    """Every execution in the journal at ``path``, in the order they started."""
    if not path.exists():
        return []
    open_runs: dict[tuple[str, int, int], Execution] = {}
    runs: list[Execution] = []
    for line in path.read_text(errors="replace").splitlines():
        parts = line.split(" ", 7)
        if len(parts) < 7 or parts[0] not in ("S", "E"):
            continue  # a line cut short by a kill
        mark, task_id, pid, thread, hostname, attempt, moment = parts[:7]
        note = parts[7] if len(parts) > 7 else ""
        try:
            key = (task_id, int(pid), int(thread))
            when = float(moment)
            tries = int(attempt)
        except ValueError:
            continue
        if mark == "S":
            run = Execution(task_id, key[1], key[2], hostname, tries, when, note=note)
            runs.append(run)
            open_runs[key] = run
        elif (ended := open_runs.pop(key, None)) is not None:
            ended.end = when
            ended.note = ended.note or note
    runs.sort(key=lambda r: r.start)
    return runs


def ended_count(path: Path) -> int:
    """How many executions have ended so far (cheap: counts end lines)."""
    if not path.exists():
        return 0
    with path.open("rb") as fh:
        return sum(1 for line in fh if line.startswith(b"E "))


def by_task(runs: Iterable[Execution]) -> dict[str, list[Execution]]:
    grouped: dict[str, list[Execution]] = defaultdict(list)
    for run in runs:
        grouped[run.task_id].append(run)
    return grouped


# -- faults ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """Something that happened to a worker, and which executions it may cut short.

    ``kind`` is one of: ``kill`` (the harness SIGKILLed the worker's process group),
    ``death`` (the worker exited by itself and was restarted), ``process-death`` (processes
    ``pids`` died, e.g. by a poison's ``os._exit``), ``freeze`` (SIGSTOP to SIGCONT),
    ``outage`` (its database connection was cut by the proxy), ``terminate`` (the server
    dropped its connections: no lease lapses, so it explains no duplicate).
    """

    kind: str
    hostname: str | None
    start: float
    end: float
    since: float = 0.0  # for kill and death: when that worker instance started
    pids: frozenset[int] = frozenset()
    interrupted_only: bool = False  # explains only executions it cut short (no end line)...
    #: ...and, for a process death, those that ended in the last ``window`` seconds before
    #: it in that process: a worker writes outcomes in batches (every 20 ms), so those of
    #: tasks that had just finished may not have been written yet.
    thread: int | None = None
    window: float = 0.0
    detail: str = ""

    @property
    def seconds(self) -> float:
        return self.end - self.start

    def covers(self, run: Execution, lease: float = LEASE, heartbeat: float = HEARTBEAT) -> bool:
        """May this fault have made ``run`` end without its outcome being recorded?"""
        if self.interrupted_only and run.end is not None:
            in_flight = (self.kind == "process-death"
                         and self.start - self.window <= run.end <= self.start + self.window)
            if not in_flight:
                return False
        if self.kind == "process-death":
            return run.pid in self.pids and run.start <= self.start + self.window
        if self.hostname is not None and run.hostname != self.hostname:
            return False
        if self.kind in ("kill", "death"):
            return self.since - 0.5 <= run.start <= self.start
        if self.kind in ("freeze", "outage"):
            # Cut off from the last renewal (up to a heartbeat before) for longer than the
            # lease: the messages it held may have gone to someone else, or back to itself.
            if self.seconds + heartbeat <= lease:
                return False
            return run.start <= self.end and (run.end is None or run.end >= self.start - lease)
        return False

    def describe(self, origin: float) -> str:
        who = self.hostname or ", ".join(str(p) for p in sorted(self.pids)) or "?"
        span = (f"+{self.start - origin:.2f}s" if self.end == self.start
                else f"+{self.start - origin:.2f}s..+{self.end - origin:.2f}s "
                     f"({self.seconds:.1f}s)")
        return f"{self.kind} of {who} at {span}{f': {self.detail}' if self.detail else ''}"


@dataclass
class DuplicateCount:
    explained: int = 0
    unexplained: int = 0
    details: list[str] = field(default_factory=list)  # the unexplained ones first


def count_duplicates(runs: dict[str, list[Execution]], faults: Sequence[Fault],
                     origin: float, ids: Iterable[str] | None = None) -> DuplicateCount:
    """Every execution after a task's first is a duplicate; it is explained when a fault
    hit the execution before it."""
    found = DuplicateCount()
    explained_details: list[str] = []
    for task_id in (runs if ids is None else ids):
        executions = runs.get(task_id, [])
        for before, after in itertools.pairwise(executions):
            causes = [f for f in faults if f.covers(before)]
            text = (f"task {task_id} ran again: first {before.describe(origin)}; then "
                    f"{after.describe(origin)}")
            if causes:
                found.explained += 1
                explained_details.append(f"{text} (explained: {causes[0].describe(origin)})")
            else:
                found.unexplained += 1
                found.details.append(f"{text} (unexplained: no fault hit the first run)")
    found.details += explained_details
    return found


def count_overlaps(runs: dict[str, list[Execution]], faults: Sequence[Fault], origin: float,
                   ids: Iterable[str] | None = None) -> list[str]:
    """Pairs of executions of one task that ran at the same time, neither faulted."""
    found = []
    for task_id in (runs if ids is None else ids):
        executions = [r for r in runs.get(task_id, ())
                      if not any(f.covers(r) for f in faults)]
        for i, first in enumerate(executions):
            for second in executions[i + 1:]:
                first_end = first.end if first.end is not None else float("inf")
                second_end = second.end if second.end is not None else float("inf")
                if first.start < second_end and second.start < first_end:
                    found.append(f"task {task_id} ran twice at once: {first.describe(origin)}"
                                 f" | {second.describe(origin)}")
    return found


# -- figures --------------------------------------------------------------------------------


@dataclass
class Figures:
    """One row of the report: a scenario (variant) on one backend."""

    scenario: str
    variant: str
    backend: str
    tasks: int = 0
    lost: int = 0
    unexpected: int = 0
    dup_explained: int = 0
    dup_unexplained: int = 0
    overlaps: int = 0
    recovery: float | None = None  # seconds from the end of the fault to all final
    throughput: float | None = None  # tasks per second
    ratio: float | None = None  # throughput over a clean run's
    restarts: list[str] = field(default_factory=list)  # the harness restarted a worker
    faults: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # why the verdict is FAIL
    details: list[str] = field(default_factory=list)  # examples behind the figures
    log_lines: list[str] = field(default_factory=list)  # notable worker log lines
    seconds: float = 0.0  # wall time of the scenario

    @property
    def passed(self) -> bool:
        return not self.problems

    @property
    def verdict(self) -> str:
        return "PASS" if self.passed else "FAIL"

    @property
    def name(self) -> str:
        return f"{self.scenario} [{self.variant}] on {self.backend}" if self.variant \
            else f"{self.scenario} on {self.backend}"

    def summary(self) -> str:
        recovery = "-" if self.recovery is None else f"{self.recovery:.1f}s"
        rate = "-" if self.throughput is None else f"{self.throughput:.0f}/s"
        if self.ratio is not None:
            rate += f" ({self.ratio:.0%} of clean)"
        return (f"{self.name}: {self.verdict}; tasks {self.tasks}, lost {self.lost}, "
                f"unexpected {self.unexpected}, duplicates {self.dup_explained} explained / "
                f"{self.dup_unexplained} unexplained, overlaps {self.overlaps}, recovery "
                f"{recovery}, throughput {rate}, restarts {len(self.restarts)}, "
                f"{self.seconds:.0f}s")

    def explain(self, limit: int = 12) -> str:
        """Everything a failed assertion should show: figures, problems, examples, logs."""
        parts = [self.summary()]
        if self.problems:
            parts.append("problems:\n" + "\n".join(f"  - {p}" for p in self.problems))
        if self.faults:
            parts.append("faults:\n" + "\n".join(f"  - {f}" for f in self.faults[:limit]))
        if self.restarts:
            parts.append("restarts:\n" + "\n".join(f"  - {r}" for r in self.restarts[:limit]))
        if self.details:
            parts.append("examples:\n" + "\n".join(f"  - {d}" for d in self.details[:limit]))
        if self.log_lines:
            parts.append("worker log lines (count x first example):\n"
                         + "\n".join(f"  {line}" for line in self.log_lines[:limit]))
        return "\n".join(parts)

    def to_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["verdict"] = self.verdict
        return data


# -- supervised workers ---------------------------------------------------------------------


@dataclass
class Exit:
    hostname: str
    pid: int
    code: int | None
    at: float
    allowed: bool
    last_lines: str

    def describe(self, origin: float) -> str:
        how = f"signal {-self.code}" if self.code is not None and self.code < 0 \
            else f"status {self.code}"
        verdict = "restarted" if self.allowed else "restarted, but that exit is not allowed"
        return (f"worker {self.hostname} (pid {self.pid}) exited with {how} at "
                f"+{self.at - origin:.2f}s; {verdict}. Its last lines: {self.last_lines}")


class Supervised:
    """A ``taskworker`` restarted whenever it exits on its own, as systemd would do it.

    ``check()`` (called from every wait) notices an exit, records it as a ``death`` fault
    and starts the worker again under the same name."""

    def __init__(self, run: Run, hostname: str, *args: str, allowed_exits: Iterable[int] = (),
                 **env: str) -> None:
        self.run = run
        self.hostname = hostname
        self.args = args
        self.env = {**FAULT_ENV, **env}
        self.allowed_exits = set(allowed_exits)
        self.exits: list[Exit] = []
        self.instances: list[Worker] = []
        self.stopped = False
        self.frozen_at: float | None = None
        self.started = time.time()
        self.worker = self._spawn()

    def _spawn(self) -> Worker:
        worker = self.run.project.worker(*self.args, hostname=self.hostname, **self.env)
        self.started = time.time()
        self.instances.append(worker)
        return worker

    @property
    def pid(self) -> int:
        return self.worker.pid

    def output(self) -> str:
        return "".join(w.output() for w in self.instances)

    def check(self) -> None:
        if self.stopped or self.frozen_at is not None or self.worker.running():
            return
        code = self.worker.proc.returncode
        now = time.time()
        tail = " | ".join(self.worker.output().strip().splitlines()[-3:])[-600:]
        allowed = code in self.allowed_exits
        gone = Exit(self.hostname, self.worker.pid, code, now, allowed, tail)
        self.exits.append(gone)
        self.run.faults.append(Fault("death", self.hostname, now, now, since=self.started,
                                     detail=f"exit status {code}"))
        self.worker.kill()  # whatever of its process group is left
        self.worker = self._spawn()

    def wait_ready(self, timeout: float = 60) -> None:
        """Wait until this instance has registered (its pid is in the worker table)."""
        self.run.wait_for(f"worker {self.hostname} (pid {self.pid}) to register", lambda: bool(
            self.run.project.query(f"SELECT 1 FROM {WORKERS} WHERE hostname = %s AND pid = %s",
                                   (self.hostname, self.pid))), timeout)

    def kill(self, restart: bool = True) -> None:
        """SIGKILL the whole process group (and start a new instance if ``restart``)."""
        pids = frozenset(group_members(self.worker.pid))
        self.worker.kill()
        now = time.time()  # after the kill: whatever started before it ran in this instance
        self.run.faults.append(Fault("kill", self.hostname, now, now, since=self.started,
                                     pids=pids, detail=f"{len(pids)} processes"))
        if restart:
            self.worker = self._spawn()
        else:
            self.stopped = True

    def freeze(self) -> None:
        os.killpg(self.worker.pid, signal.SIGSTOP)
        self.frozen_at = time.time()

    def thaw(self) -> Fault:
        os.killpg(self.worker.pid, signal.SIGCONT)
        assert self.frozen_at is not None
        fault = Fault("freeze", self.hostname, self.frozen_at, time.time(),
                      detail="SIGSTOP of the whole process group")
        self.run.faults.append(fault)
        self.frozen_at = None
        return fault

    def stop(self) -> None:
        self.stopped = True
        if self.frozen_at is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.worker.pid, signal.SIGCONT)
        self.worker.kill()

    def running(self) -> bool:
        return self.worker.running()


# -- a run of one scenario variant ----------------------------------------------------------


class Stuck(Exception):
    """A wait ended without its condition: no progress for too long, or the cap."""


@contextlib.contextmanager
def use_broker(project: ProjectLike, broker: str) -> Iterator[None]:
    """Producers and workers of the block use ``broker`` ("database", "redis" or "amqp",
    on the local servers, emptied first); results stay in the project's database."""
    if broker == "database":
        yield
        return
    before = project.env.get("TASKS_BROKER_URL")
    if broker == "redis":
        url = f"redis://127.0.0.1:6379/12?prefix=faults-{uuid.uuid4().hex[:8]}"
    elif broker == "amqp":
        url = "amqp://guest:guest@127.0.0.1:5672//"
        from django_tasks.brokers.amqp import AmqpBroker

        cleaner = AmqpBroker(url)
        try:
            cleaner._publisher()[0].channel.queue_delete(queue="default")
        finally:
            cleaner.close()
    else:
        raise ValueError(f"no broker {broker!r}")
    project.env["TASKS_BROKER_URL"] = url
    try:
        yield
    finally:
        if before is None:
            project.env.pop("TASKS_BROKER_URL", None)
        else:
            project.env["TASKS_BROKER_URL"] = before


class Run:
    """One scenario variant on one backend: its journal, workers, faults and figures."""

    def __init__(self, project: ProjectLike, scale: Scale, scenario: str, variant: str = "",
                 *, reset: bool = True) -> None:
        self.project = project
        self.scale = scale
        self.figures = Figures(scenario, variant, project.backend)
        self.faults: list[Fault] = []
        self.supervised: list[Supervised] = []
        self.ticks: list[Callable[[], None]] = []
        slug = re.sub(r"[^A-Za-z0-9]+", "-", f"{scenario}-{variant}").strip("-")
        self.dir = Path(tempfile.mkdtemp(prefix=f"{slug}-", dir=project.tmp))
        self.journal = self.dir / "journal.txt"
        self.origin = time.time()
        self.finished = False
        self._broker: Any = None  # a broker outside the database, to count its messages
        if reset:
            reset_tables(project)

    # -- workers ----------------------------------------------------------------------

    def worker(self, hostname: str, *args: str, allowed_exits: Iterable[int] = (),
               **env: str) -> Supervised:
        sup = Supervised(self, hostname, *args, allowed_exits=allowed_exits, **env)
        self.supervised.append(sup)
        return sup

    def tick(self) -> None:
        for sup in self.supervised:
            sup.check()
        for hook in self.ticks:
            hook()

    def stop_workers(self) -> None:
        for sup in self.supervised:
            sup.stop()

    # -- waiting ----------------------------------------------------------------------

    def wait_for(self, what: str, check: Callable[[], bool], timeout: float) -> float:
        """Tick until ``check()``; return the ``time.time()`` it first held. Raises Stuck."""
        deadline = time.monotonic() + timeout
        while True:
            self.tick()
            if check():
                return time.time()
            if time.monotonic() > deadline:
                raise Stuck(f"timed out after {timeout:.0f}s waiting for {what}")
            time.sleep(TICK)

    def hold(self, seconds: float) -> None:
        """Let ``seconds`` pass while supervising (a fault's length is a duration)."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self.tick()
            time.sleep(min(TICK, left))

    def queued(self) -> int:
        """Messages on the broker: queue rows on the database broker, else what the
        broker counts (on RabbitMQ: those not delivered yet)."""
        url = self.project.env.get("TASKS_BROKER_URL", "django://")
        if url.startswith("django:"):
            return self.project.count(QUEUE)
        if self._broker is None:
            from django.utils.module_loading import import_string

            from django_tasks.conf import BROKER_CLASSES

            self._broker = import_string(BROKER_CLASSES[url.split("://", 1)[0]])(url)
        return sum(self._broker.depths(["default"]).values())

    def progress(self) -> tuple[int, ...]:
        """What moves while a drain makes progress: queued messages and final results."""
        final = self.project.count(RESULTS, f"state IN {FINAL!r}")
        return self.queued(), final

    def drained(self) -> bool:
        """The queue is empty and no result row waits for an outcome."""
        return (self.queued() == 0
                and self.project.count(RESULTS, f"state NOT IN {FINAL!r}") == 0)

    def wait_drained(self, what: str = "the queue to drain and every result to be final",
                     until: Callable[[], bool] | None = None) -> float | None:
        """Tick until ``until()`` (default: drained) holds; return when it first did, or
        None (and a problem) when nothing moved for ``scale.patience`` or ``scale.cap``
        passed."""
        until = until or self.drained
        started = last_move = time.monotonic()
        seen: tuple[int, ...] | None = None
        while True:
            self.tick()
            if until():
                return time.time()
            now = time.monotonic()
            state = self.progress()
            if state != seen:
                seen, last_move = state, now
            if now - last_move > self.scale.patience:
                self.problem(f"stuck: waiting for {what}, nothing moved for "
                             f"{self.scale.patience:.0f}s (queue rows, final results: {seen})")
                return None
            if now - started > self.scale.cap:
                self.problem(f"gave up after {self.scale.cap:.0f}s waiting for {what} "
                             f"(queue rows, final results: {seen})")
                return None
            time.sleep(TICK)

    def wait_ended(self, count: int, what: str) -> float | None:
        """Wait until ``count`` executions have ended (for a fault in mid-drain)."""
        try:
            return self.wait_for(what, lambda: ended_count(self.journal) >= count,
                                 self.scale.cap)
        except Stuck as exc:
            self.problem(str(exc))
            return None

    # -- queueing ---------------------------------------------------------------------

    def script(self, code: str, timeout: float = 300) -> Any:
        """Run ``code`` in ``manage.py shell`` (the producer's own process and connection);
        it sets ``result``, which comes back through JSON."""
        return run_script(self.project, self.dir, code, timeout=timeout)

    def enqueue(self, count: int, seconds: float = 0.0, task: str = "record") -> list[str]:
        """Queue ``count`` journaled tasks; return their ids in queue order."""
        return list(self.script(f"""
            from django.db import transaction
            from {TASKS} import {task}
            result = []
            for start in range(0, {count}, 500):
                with transaction.atomic():
                    for _ in range(start, min(start + 500, {count})):
                        result.append({task}.delay({str(self.journal)!r}, {seconds!r}).id)
        """))

    # -- judging ----------------------------------------------------------------------

    def problem(self, text: str) -> None:
        self.figures.problems.append(text)

    def results(self) -> dict[str, dict[str, Any]]:
        rows = self.project.query(f"SELECT task_id, state, worker, attempts, result, task_name "
                                  f"FROM {RESULTS}")
        return {r[0]: {"state": r[1], "worker": r[2], "attempts": r[3], "result": r[4],
                       "name": r[5]} for r in rows}

    def judge(self, expected: dict[str, str], *, rolled_back: Iterable[str] = (),
              innocents: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
        """Count lost, unexpected, duplicates and overlaps; note the problems.

        ``expected`` maps each committed task id to its due final state; ``innocents`` (by
        default every expected id) are the tasks whose duplicates and overlaps count. Any
        other result row is unexpected."""
        figures = self.figures
        results = self.results()
        runs = by_task(read_journal(self.journal))
        innocent = set(expected if innocents is None else innocents)
        rolled = set(rolled_back)
        figures.tasks = len(expected)
        lost, wrong = [], []
        for task_id, due in expected.items():
            row = results.get(task_id)
            if row is None or row["state"] not in FINAL:
                lost.append(f"task {task_id} is {row['state'] if row else 'without a result row'}"
                            f" (due: {due}; executions: {len(runs.get(task_id, []))})")
            elif row["state"] != due:
                wrong.append(f"task {task_id} ended {row['state']} on {row['worker']} "
                             f"after {row['attempts']} deliveries and "
                             f"{len(runs.get(task_id, []))} executions (due: {due}): "
                             f"{_short(row['result'])}")
        for task_id in sorted(rolled):
            if task_id in results:
                wrong.append(f"rolled-back task {task_id} has a result row: "
                             f"{results[task_id]['state']}")
            if task_id in runs:
                wrong.append(f"rolled-back task {task_id} ran {len(runs[task_id])} times")
        for task_id, row in results.items():
            if task_id not in expected and task_id not in rolled:
                wrong.append(f"a result row for {_short(task_id, 80)!r}, which nobody queued: "
                             f"{row['state']} {_short(row['name'], 80)!r}")
        leftovers: list[Any] = self.project.query(
            f"SELECT task_id, lease_owner, deliveries FROM {QUEUE}")
        if not leftovers and self.queued():
            leftovers = [("messages on the broker", "", self.queued())]
        figures.lost, figures.unexpected = len(lost), len(wrong)
        if lost:
            self.problem(f"lost: {len(lost)} committed tasks did not reach a final state")
        if wrong:
            self.problem(f"unexpected: {len(wrong)} outcomes or rows that must not be")
        if leftovers:
            self.problem(f"the queue still holds {len(leftovers)} rows, e.g. "
                         f"{[tuple(r) for r in leftovers[:3]]}")
        dups = count_duplicates(runs, self.faults, self.origin, sorted(innocent))
        figures.dup_explained, figures.dup_unexplained = dups.explained, dups.unexplained
        if dups.unexplained:
            self.problem(f"{dups.unexplained} unexplained duplicate executions")
        overlaps = count_overlaps(runs, self.faults, self.origin, sorted(innocent))
        figures.overlaps = len(overlaps)
        if overlaps:
            self.problem(f"{len(overlaps)} times a task ran twice at once in a live worker")
        figures.details += lost[:5] + wrong[:5] + dups.details[:5] + overlaps[:5]
        return results

    def finish(self) -> Figures:
        """Stop the workers and fill in faults, restarts and log lines (once)."""
        figures = self.figures
        if self.finished:
            return figures
        self.finished = True
        for sup in self.supervised:
            for gone in sup.exits:
                figures.restarts.append(gone.describe(self.origin))
                if not gone.allowed:
                    self.problem(f"worker {gone.hostname} exited on its own (status "
                                 f"{gone.code}); the harness had to restart it")
        self.stop_workers()
        figures.faults = [f.describe(self.origin) for f in self.faults]
        figures.log_lines = notable_lines(sup.output() for sup in self.supervised)
        figures.seconds = time.time() - self.origin
        return figures

    def require_running(self) -> None:
        """Every supervised worker must still be running (a restart counts, see finish)."""
        for sup in self.supervised:
            if not sup.stopped and not sup.running():
                self.problem(f"worker {sup.hostname} is not running at the end "
                             f"(status {sup.worker.proc.returncode})")

    @contextlib.contextmanager
    def guarded(self) -> Iterator[Run]:
        """Run a scenario's body: a wait that got stuck, or any error of the harness, becomes
        a problem of the figures instead of ending the whole suite."""
        try:
            yield self
        except Stuck as exc:
            self.problem(str(exc))
        except Exception as exc:  # noqa: BLE001 - reported in the figures, with its place
            where = traceback.extract_tb(exc.__traceback__)[-1]
            self.problem(f"harness error {type(exc).__name__}: {_short(exc, 600)} "
                         f"(at {Path(where.filename).name}:{where.lineno})")


def _short(text: Any, limit: int = 200) -> str:
    value = str(text)
    return value if len(value) <= limit else value[:limit - 3] + "..."


def exception_type(row: dict[str, Any] | None) -> str | None:
    """The ``exc_type`` a FAILURE row records, if it is readable."""
    if not row or not row.get("result"):
        return None
    try:
        value = json.loads(row["result"])
    except ValueError:
        return None
    return value.get("exc_type") if isinstance(value, dict) else None


# -- database helpers -----------------------------------------------------------------------


def reset_tables(project: ProjectLike) -> None:
    """Kill every worker of ``project`` and empty the task tables."""
    for worker in project.workers:
        worker.kill()
    for table in TABLES:
        project.query(f"DELETE FROM {table}")


def drop_connections(project: ProjectLike) -> int:
    """Have the server end every other client's connection to the project's database."""
    name = urlsplit(project.url).path.lstrip("/")
    if project.backend == "postgres":
        return len(project.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                 "WHERE datname = %s AND pid <> pg_backend_pid()", (name,)))
    if project.backend != "mysql":
        raise ValueError(f"{project.backend} has no server to drop connections")
    ids = project.query("SELECT id FROM information_schema.processlist "
                        "WHERE db = %s AND id <> CONNECTION_ID()", (name,))
    dropped = 0
    for (connection_id,) in ids:
        with contextlib.suppress(Exception):  # it may have gone by itself meanwhile
            project.query(f"KILL CONNECTION {int(connection_id)}")
            dropped += 1
    return dropped


def upstream(project: ProjectLike) -> tuple[str, int]:
    parts = urlsplit(project.url)
    default = 5432 if project.backend == "postgres" else 3306
    host = parts.hostname or "127.0.0.1"
    if host not in ("127.0.0.1", "localhost"):
        raise ValueError(f"the fault suite only talks to 127.0.0.1, not {host}")
    return "127.0.0.1", parts.port or default


def insert_raw(project: ProjectLike, task_id: str, body: str) -> int:
    """A queue row shaped the way the database broker writes one; returns its id."""
    now = project.timestamp(dt.datetime.now(dt.UTC))
    project.query(
        f"INSERT INTO {QUEUE} (queue, priority, task_id, body, visible_at, lease_owner, "
        "deliveries, created_at) VALUES ('default', 0, %s, %s, %s, NULL, 0, %s)",
        (task_id, body, now, now))
    rows = project.query(f"SELECT MAX(id) FROM {QUEUE} WHERE task_id = %s", (task_id,))
    return int(rows[0][0])


def new_id() -> str:
    return str(uuid.uuid4())


# -- producer scripts -----------------------------------------------------------------------


def script_command(project: ProjectLike, directory: Path, code: str) -> tuple[list[str], Path]:
    """The command running ``code`` in ``manage.py shell``; ``result`` goes to the file."""
    token = uuid.uuid4().hex[:8]
    source, out = directory / f"script-{token}.py", directory / f"script-{token}.json"
    source.write_text(textwrap.dedent(code) + textwrap.dedent(f"""
        import json as _json
        with open({str(out)!r}, "w") as _out:
            _json.dump(result, _out)
    """))
    runner = f"exec(compile(open({str(source)!r}).read(), {str(source)!r}, 'exec'))"
    return [sys.executable, "manage.py", "shell", "-v", "0", "-c", runner], out


def run_script(project: ProjectLike, directory: Path, code: str, timeout: float = 300) -> Any:
    command, out = script_command(project, directory, code)
    proc = subprocess.run(command, cwd=ROOT, env=project.env, capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode or not out.exists():
        raise AssertionError(f"producer script failed ({proc.returncode}):\n{proc.stdout}\n"
                             f"{proc.stderr[-4000:]}")
    return json.loads(out.read_text())


# -- worker logs ----------------------------------------------------------------------------

_LOG_LINE = re.compile(r"^\[[^\]]*: (WARNING|ERROR|CRITICAL)/[^\]]*\] (.*)$")
_VARIABLE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|"
                       r"\b0x[0-9a-f]+\b|\d+(\.\d+)?")


def notable_lines(outputs: Iterable[str], limit: int = 20) -> list[str]:
    """Warnings and errors of the workers' logs, grouped by their shape, most frequent
    first: ``"<count>x <first example>"``; a traceback's last line is added to its entry."""
    counts: Counter[str] = Counter()
    first: dict[str, str] = {}
    for output in outputs:
        shape = ""
        for line in output.splitlines():
            match = _LOG_LINE.match(line)
            if match:
                shape = _VARIABLE.sub("#", match.group(2))[:160]
                counts[shape] += 1
                first.setdefault(shape, line.strip()[:400])
            elif line.startswith("[") or not line.strip():
                shape = ""  # an INFO line, or the end of a traceback
            elif shape and not line.startswith((" ", "Traceback")) \
                    and counts[shape] == 1 and " -> " not in first[shape]:
                first[shape] += f" -> {line.strip()[:300]}"
    return [f"{n}x {first[shape]}" for shape, n in counts.most_common(limit)]


# -- the machine ----------------------------------------------------------------------------


def machine(versions: dict[str, str]) -> dict[str, str]:
    import platform
    import sqlite3

    import django

    info = {"cores": str(os.cpu_count()), "python": platform.python_version(),
            "django": django.get_version(), "system": f"{platform.system()} "
                                                      f"{platform.release()}",
            "sqlite": sqlite3.sqlite_version}
    info.update(versions)
    return info


def server_version(project: ProjectLike) -> str:
    if project.backend == "postgres":
        return str(project.query("SHOW server_version")[0][0])
    if project.backend == "mysql":
        return str(project.query("SELECT VERSION()")[0][0])
    return str(project.query("SELECT sqlite_version()")[0][0])
