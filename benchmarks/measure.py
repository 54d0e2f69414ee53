"""The measurements, each run on one framework (``frameworks.py``) and turned into cells of
the report: an error becomes its cell's text, never a failed run.

- enqueue: ``noop.delay()`` one by one; bulk: ``delay_many`` (Celery: a group);
- drain of queued no-op tasks at -c 1 and -c 2, with the worker's start-up measured
  separately and subtracted, then its memory idle after the drain;
- on the warm -c 2 worker: round trips ``add.delay(i, i).get()``, and the worker's memory
  with many countdown tasks pending;
- the drain rate at -c 2 with 1,000, 20,000 and 200,000 tasks queued (Celery: over its first
  4,000 done), each on a fresh worker.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import statistics
import subprocess
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from benchmarks.common import log, memory_mib, other_load, percentile, running, tail
from benchmarks.frameworks import Celery, Framework


@dataclass
class Cell:
    value: float | tuple[float, ...] | None = None
    note: str = ""
    error: str = ""


@dataclass
class Drain:
    tasks: int
    done: int = 0
    elapsed: float = 0.0  # spawn → all done
    startup: float = 0.0
    first_at: float | None = None
    first_count: int = 0

    @property
    def rate(self) -> float:
        """From spawn minus the start-up time measured separately; from the first task seen
        done when the drain was over sooner than that start-up time suggests."""
        if self.elapsed - self.startup < 0.1 and self.rate_from_first is not None:
            return self.rate_from_first
        return self.done / max(1e-6, self.elapsed - self.startup)

    @property
    def early(self) -> bool:
        """Done before the measured start-up time (less 0.1 s) had passed."""
        return self.elapsed - self.startup < 0.1

    @property
    def rate_from_first(self) -> float | None:
        if self.first_at is None or self.elapsed <= self.first_at:
            return None
        return (self.done - self.first_count) / (self.elapsed - self.first_at)


@dataclass
class Plan:
    """What to measure on one framework, and with which environment for enqueue."""

    enqueue_env: dict[str, str] = field(default_factory=dict)
    bulk: bool = True
    latency: bool = True
    countdown: bool = True


def short_error(exc: BaseException) -> str:
    """An error in a cell: its type and the last line of its message (a subprocess's own
    error, when it failed)."""
    message = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {message[-1] if message else ''}"[:120]


def wait_for(fw: Framework, worker: subprocess.Popen[bytes], n: int, cap: float,
             poll: float, started: float, drain: Drain | None = None) -> tuple[int, float]:
    """Poll the count of finished tasks until it reaches ``n`` or ``cap`` seconds pass."""
    deadline = started + cap
    while True:
        time.sleep(poll)
        done = fw.done()
        now = time.monotonic() - started
        if drain is not None and done and drain.first_at is None:
            drain.first_at, drain.first_count = now, done
        if done >= n:
            return done, now
        if worker.poll() is not None:
            raise RuntimeError(f"{fw.name} worker exited with {worker.returncode}:\n"
                               f"{tail(fw.logfile)}")
        if time.monotonic() > deadline:
            return done, now


def startup_time(fw: Framework, concurrency: int, repeats: int) -> float:
    """Median time from spawning a worker to the end of one task queued beforehand."""
    samples = []
    for _ in range(repeats):
        fw.reset()
        fw.fill(1)
        started = time.monotonic()
        with running(fw.worker_cmd(concurrency), fw.env(), fw.logfile) as worker:
            done, took = wait_for(fw, worker, 1, 60.0, 0.01, started)
        if not done:
            raise RuntimeError(f"{fw.name} worker ran no task in 60 s:\n{tail(fw.logfile)}")
        samples.append(took)
    return statistics.median(samples)


@dataclass
class Step:
    """One measurement: the cells it fills (its error fills them when it fails)."""

    keys: list[str]
    what: str
    fn: Callable[[], None]


def side_by_side(first: Measurement, second: Measurement | None) -> None:
    """Run both sides' steps in turns (``first``'s enqueue, ``second``'s enqueue,
    ``first``'s bulk enqueue, ...), so that each row's two figures are taken a few minutes
    apart at most: on a machine whose speed drifts over minutes, a ratio of figures taken a
    quarter of an hour apart measures the drift as much as the frameworks."""
    sides = [m for m in (first, second) if m is not None]
    for side in sides:
        side.note_other_load()
    for turn in itertools.zip_longest(*(side.steps() for side in sides)):
        for side, step in zip(sides, turn, strict=True):
            if step is not None:
                side.attempt(step.keys, step.what, step.fn)
    for side in sides:
        with contextlib.suppress(Exception):  # the next framework resets again
            side.fw.reset()


class Measurement:
    """All measurements of one framework (``steps()``), with the cells and raw-number lines
    they fill; ``side_by_side()`` runs them, two frameworks' in turns."""

    def __init__(self, fw: Framework, size: dict[str, Any], label: str, plan: Plan) -> None:
        self.fw, self.size, self.label, self.plan = fw, size, label, plan
        self.celery = isinstance(fw, Celery)
        self.cells: dict[str, Cell] = {}
        self.details: list[str] = []

    def steps(self) -> list[Step]:
        """The measurements in order, each a row or a few: the same list for both sides."""
        steps = [Step(["enqueue"], "enqueue", self.enqueue)]
        if self.plan.bulk:
            steps.append(Step(["bulk"], "bulk enqueue", self.bulk))
        for concurrency in (1, 2):
            keys = [f"startup{concurrency}", f"drain{concurrency}", f"memory{concurrency}"]
            if concurrency == 2:
                keys += ["latency", "latency_fast", "memory_before_countdown",
                         "memory_countdown"]
            steps.append(Step(keys, f"drain -c {concurrency}",
                              lambda c=concurrency: self.drain(c)))  # type: ignore[misc]
        for index, depth in enumerate(self.size["depths"]):
            steps.append(Step([f"depth{index}"], f"drain -c 2 with {depth:,} queued",
                              lambda i=index, d=depth: self.depth(i, d)))  # type: ignore[misc]
        return steps

    def note_other_load(self) -> None:
        busy = other_load()
        if busy is not None and busy >= 10:
            self.details.append(f"{self.label}: the machine was {busy:.0f}% busy (all CPUs) "
                                "in the second before, with no benchmark process running")

    def attempt(self, keys: list[str], what: str, fn: Callable[[], None]) -> None:
        log(f"{self.label}: {what}")
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - one failed row, not a failed run
            short = short_error(exc)
            log(f"{self.label}: {what} failed: {exc}")
            if os.environ.get("BENCH_DEBUG"):
                traceback.print_exc()
            for key in keys:
                self.cells.setdefault(key, Cell(error=short))
            self.details.append(f"{self.label}, {what}: failed ({short})")

    def enqueue(self) -> None:
        self.fw.reset()
        rate = self.fw.run(self.fw.enqueue_code.format(n=self.size["enqueue"],
                                                       warm=self.size["warm"]),
                           self.plan.enqueue_env)
        self.cells["enqueue"] = Cell(float(rate))

    def bulk(self) -> None:
        self.fw.reset()
        rate = self.fw.run(self.fw.bulk_code.format(n=self.size["bulk"],
                                                    warm=self.size["warm"]),
                           self.plan.enqueue_env)
        self.cells["bulk"] = Cell(float(rate))

    @contextlib.contextmanager
    def draining(self, concurrency: int, queued: int, counted: int,
                 startup: float) -> Iterator[tuple[subprocess.Popen[bytes], Drain, str]]:
        """Queue ``queued`` no-op tasks (after a reset, the tables vacuumed), spawn a worker
        at ``concurrency`` and wait until ``counted`` of them are done or the cap is up;
        yield the worker, still running, the drain and the note its cell takes."""
        fw, size = self.fw, self.size
        cap = size["celery_drain_cap"] if self.celery else size["drain_cap"]
        fw.reset()
        fw.fill(queued)
        fw.db.vacuum(fw.tables)
        result = Drain(counted, startup=startup)
        started = time.monotonic()
        with running(fw.worker_cmd(concurrency), fw.env(), fw.logfile) as worker:
            result.done, result.elapsed = wait_for(fw, worker, counted, cap, fw.poll, started,
                                                   result)
            if result.early and result.rate_from_first is None:
                # All seen done at the first look, before a worker could have run a task: the
                # broker's count moved for another reason (seen once on RabbitMQ, 200,000
                # queued). No rate can be taken from one look.
                raise RuntimeError(f"{result.done:,} counted done at the first look, "
                                   f"{result.elapsed:.2f} s after spawn, before the start-up "
                                   f"time ({startup:.2f} s): no rate")
            note = "(from the first done)" if result.early else ""
            if result.done < counted:
                note = f"({result.done:,} of {counted:,} done in {cap:.0f} s)"
            yield worker, result, note

    def drain(self, concurrency: int) -> None:
        fw, size = self.fw, self.size
        tasks = size["celery_drain"] if self.celery else size["drain"]
        startup = startup_time(fw, concurrency, size["startup_repeats"])
        self.cells[f"startup{concurrency}"] = Cell(startup)
        rates = []
        for _ in range(size["drain_repeats"] - 1):  # the last one keeps its worker below
            with self.draining(concurrency, tasks, tasks, startup) as (_, result, _note):
                rates.append(result.rate)
        with self.draining(concurrency, tasks, tasks, startup) as (worker, result, note):
            rates.append(result.rate)
            if not note and tasks != size["drain"]:
                note = f"({tasks:,} tasks)"
            self.cells[f"drain{concurrency}"] = Cell(statistics.median(rates), note)
            first = result.rate_from_first
            self.details.append(
                f"{self.label}, drain -c {concurrency}: {result.done:,} of {tasks:,} tasks "
                f"done {result.elapsed:.2f} s after spawn; start-up {startup:.2f} s; "
                f"{result.rate:,.0f} tasks/s from spawn minus start-up"
                + (f", {first:,.0f} tasks/s from the first one seen done "
                   f"({result.first_at:.2f} s)" if first is not None else "")
                + (f"; the median of {len(rates)} drains: "
                   + ", ".join(f"{rate:,.0f}" for rate in rates) + " tasks/s"
                   if len(rates) > 1 else ""))
            time.sleep(2.0)  # idle after the drain
            self.cells[f"memory{concurrency}"] = Cell(memory_mib(worker.pid))
            if concurrency == 2:
                if self.plan.latency and fw.results:
                    # The drain's dead rows vacuumed, as autovacuum would within its minute
                    # (it is off on some servers, this benchmark's among them).
                    fw.db.vacuum(fw.tables)
                    self.latency(worker)
                if self.plan.countdown:
                    self.attempt(["memory_before_countdown", "memory_countdown",
                                  "latency_countdown"],
                                 "countdown tasks pending",
                                 lambda: self.countdown(worker))

    def depth(self, index: int, depth: int) -> None:
        """The drain rate at -c 2 with ``depth`` tasks queued, on a fresh worker, from spawn
        minus the -c 2 start-up (as ``drain``). Celery is timed over its first
        ``celery_drain`` tasks done: a slower drain of the whole queue would take minutes,
        and what the depth costs shows from the first task."""
        startup = self.cells.get("startup2", Cell()).value
        if not isinstance(startup, float):
            startup = startup_time(self.fw, 2, 1)
        counted = min(depth, self.size["celery_drain"]) if self.celery else depth
        with self.draining(2, depth, counted, startup) as (_, result, note):
            self.cells[f"depth{index}"] = Cell(result.rate, note)
            self.details.append(
                f"{self.label}, drain -c 2 with {depth:,} queued: {result.done:,} of "
                f"{counted:,} done {result.elapsed:.2f} s after spawn; "
                f"{result.rate:,.0f} tasks/s")

    def latency(self, worker: subprocess.Popen[bytes]) -> None:
        size = self.size
        for key, kw, calls, warm in (
            ("latency", {}, size["celery_default_calls"] if self.celery else size["calls"],
             5 if self.celery else size["warm"]),
            ("latency_fast", {"interval": 0.005}, size["calls"], size["warm"]),
        ):
            self.round_trips(worker, key, kw, calls, warm)

    def round_trips(self, worker: subprocess.Popen[bytes], key: str, kw: dict[str, Any],
                    calls: int, warm: int) -> None:
        """``calls`` round trips after ``warm`` ones, ``get(**kw)``: their percentiles."""
        if self.celery and self.size["quick"]:
            warm = min(warm, 2)
        log(f"{self.label}: round trips {kw or 'get()'}: {warm} warm-up + {calls} calls")
        try:
            code = self.fw.latency_code.format(warm=warm, n=calls, kw=repr(kw))
            samples = self.fw.run(code, timeout=240)
            values = tuple(percentile(samples, q) for q in (0.50, 0.95, 0.99))
            note = f"({calls} calls)" if calls != self.size["calls"] else ""
            self.cells[key] = Cell(values, note)
        except Exception as exc:  # noqa: BLE001 - one failed row
            self.cells[key] = Cell(error=short_error(exc))
            log(f"{self.label}: round trips failed: {exc}")
        if worker.poll() is not None:
            raise RuntimeError(f"worker died:\n{tail(self.fw.logfile)}")

    def countdown(self, worker: subprocess.Popen[bytes]) -> None:
        """Queue many tasks due in an hour, let the worker see them, read its memory: before
        they are queued (after the round trips, whose own allocations are not theirs) and
        with them pending."""
        n = self.size["countdown"]
        self.cells["memory_before_countdown"] = Cell(memory_mib(worker.pid))
        self.fw.fill_countdown(n)
        started = time.monotonic()
        note = ""
        if isinstance(self.fw, Celery):  # the worker takes every ETA task into memory
            while self.fw.queued() and time.monotonic() - started < 120:
                time.sleep(0.2)
            left = self.fw.queued()
            took = time.monotonic() - started
            self.details.append(f"{self.label}: the worker held {n - left:,} of {n:,} "
                                f"countdown tasks {took:.1f} s after the last was published")
            if left:
                note = f"(the worker held {n - left:,} of them after {took:.0f} s)"
        time.sleep(3.0)  # ours: a fetch or two (once a second when idle) moves nothing
        if worker.poll() is not None:
            raise RuntimeError(f"worker died:\n{tail(self.fw.logfile)}")
        self.cells["memory_countdown"] = Cell(memory_mib(worker.pid), note)
        if self.plan.latency and self.fw.results:  # does the worker pay for them per task?
            self.round_trips(worker, "latency_countdown", {"interval": 0.005},
                             self.size["calls"], self.size["warm"])
