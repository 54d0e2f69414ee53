"""End-to-end beats: several ``taskbeat`` processes killed with SIGKILL at random queue each
slot of every-second schedules exactly once with none missed; an edit is picked up within a
tick; the settings schedule is synced and run; ``taskworker --beat`` on two workers queues
once; SIGTERM stops a beat cleanly."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import random
import re
import signal
import time
from collections import defaultdict
from typing import Any

import pytest

from .conftest import Project

pytestmark = [pytest.mark.e2e,
              pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)]
FAST = {"TASKS_HEARTBEAT_SECONDS": "0.5", "TASKS_LEASE_SECONDS": "3"}
SLOTS = "django_tasks_beatslot"


def every_second(project: Project, count: int, task: str = "noop") -> None:
    project.shell(
        "from django_tasks.models import IntervalSchedule, PeriodicTask\n"
        "second, _ = IntervalSchedule.objects.get_or_create(every=1, period='seconds')\n"
        f"for i in range({count}):\n"
        f"    PeriodicTask.objects.create(name=f'p{{i}}', task='testproject.demo.tasks.{task}',"
        " interval=second)\n")


def utc(value: Any) -> dt.datetime:
    moment = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def slots(project: Project) -> dict[str, list[dt.datetime]]:
    """Due times of the queued slots, per periodic task's name, oldest first."""
    found: dict[str, list[dt.datetime]] = defaultdict(list)
    for name, due in project.query(
            f"SELECT t.name, s.due_at FROM {SLOTS} s JOIN django_tasks_periodictask t "
            "ON t.id = s.periodic_task_id ORDER BY t.name, s.due_at"):
        found[name].append(utc(due))
    return found


MISSED = re.compile(r"Periodic task (\S+) missed its runs due from (\S+) to before (\S+) ")


def logged_misses(project: Project) -> set[tuple[str, dt.datetime, dt.datetime]]:
    """The runs every beat said it skipped, a tick having come too late (a loaded machine):
    (task, first skipped slot, next slot)."""
    return {(name, utc(start), utc(end)) for process in project.workers
            for name, start, end in MISSED.findall(process.output())}


def assert_every_slot_once(project: Project, count: int, at_least: int) -> None:
    """One slot a second per task; a longer gap only where a beat logged the runs a late
    tick skipped (by design: no burst of catch-up runs), never a doubled slot."""
    found = slots(project)
    assert len(found) == count, f"{len(found)} of {count} schedules were queued"
    misses = logged_misses(project)
    second = dt.timedelta(seconds=1)
    for task, dues in found.items():
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(dues)
                if abs((b - a).total_seconds() - 1.0) >= 1e-3
                and (task, a + second, b) not in misses]
        assert not gaps, f"task {task}: slots not one second apart (missed or doubled) " \
            f"that no beat logged as missed: {gaps}"
        assert len(dues) >= at_least, f"task {task} was queued {len(dues)} times"
    queued = project.count("django_tasks_taskresult")
    assert queued == sum(len(d) for d in found.values()), "a slot was queued twice or not at all"


@pytest.mark.parametrize("count", [2, 3])
def test_beats_killed_at_random_queue_every_slot_once(project: Project, count: int) -> None:
    every_second(project, 5)
    beats = [project.beat("--tick", "0.2", hostname=f"b{i}", **FAST) for i in range(count)]
    project.wait("the first slots", lambda: project.count(SLOTS) >= 5, timeout=30)
    rng = random.Random(count)
    for round_ in range(5):
        time.sleep(rng.uniform(1.0, 2.5))
        victim = rng.randrange(count)
        beats[victim].kill()
        beats[victim] = project.beat("--tick", "0.2", hostname=f"b{victim}-{round_}", **FAST)
    time.sleep(2)
    for beat in beats:
        beat.proc.send_signal(signal.SIGTERM)
    for beat in beats:
        # A tick waiting for SQLite's write lock hears the signal when the wait ends: up to
        # the connection's 30-second timeout (it did once, in CI, on a loaded machine).
        assert beat.wait_exit(45) == 0
    assert_every_slot_once(project, 5, at_least=8)


def test_an_edit_is_picked_up_within_a_tick(project: Project) -> None:
    project.shell(
        "from django_tasks.models import IntervalSchedule, PeriodicTask\n"
        "hour, _ = IntervalSchedule.objects.get_or_create(every=1, period='hours')\n"
        "PeriodicTask.objects.create(name='slow', task='testproject.demo.tasks.noop',"
        " interval=hour)\n")
    beat = project.beat("--tick", "1", **FAST)
    project.wait_ready(beat)
    time.sleep(1.5)
    assert project.count(SLOTS) == 0
    edited = time.monotonic()
    project.shell(  # a bulk update, which no save() sees
        "from django_tasks.models import IntervalSchedule, PeriodicTask\n"
        "second, _ = IntervalSchedule.objects.get_or_create(every=1, period='seconds')\n"
        "PeriodicTask.objects.filter(name='slow').update(interval=second)\n")
    project.wait("the edit to take effect", lambda: project.count(SLOTS) >= 1, timeout=10)
    # within a tick to notice, plus the one second the new interval waits first
    assert time.monotonic() - edited < 6


def test_the_settings_schedule_is_synced_and_run(project: Project) -> None:
    seed = {"DEMO_BEAT_SCHEDULE": "True", "DEMO_BEAT_EVERY": "1"}
    beat = project.beat("--tick", "0.5", **seed, **FAST)
    project.worker("-c", "1", **seed)
    project.wait("a result of the seed schedule", lambda: bool(project.query(
        "SELECT 1 FROM django_tasks_taskresult WHERE state = 'SUCCESS' AND result = '32'")),
        timeout=30)
    rows = project.query("SELECT name, source, enabled FROM django_tasks_periodictask "
                         "ORDER BY name")
    assert [(r[0], r[1]) for r in rows] == [("add-every-30-seconds", "settings"),
                                           ("monday-morning", "settings")]
    assert "2 synced from TASKS_BEAT_SCHEDULE" in beat.output()


def test_taskworker_beat_on_two_workers_queues_each_slot_once(project: Project) -> None:
    every_second(project, 3, task="noop")
    workers = [project.worker("-c", "1", "--beat", hostname=f"wb{i}", **FAST)
               for i in range(2)]
    project.wait("six seconds of slots", lambda: project.count(SLOTS) >= 15, timeout=40)
    for worker in workers:
        worker.proc.send_signal(signal.SIGTERM)
    for worker in workers:
        assert worker.wait_exit(30) == 0
    assert_every_slot_once(project, 3, at_least=5)
    project.wait("every queued run to succeed", lambda: project.count(
        "django_tasks_taskresult", "state <> 'SUCCESS'") == 0, timeout=30)


def test_a_beat_stops_on_sigterm_and_leaves_its_row(project: Project, tmp_path: Any) -> None:
    health = tmp_path / "beat.health"
    beat = project.beat("--health-file", str(health), hostname="solo-beat", **FAST)
    project.wait_ready(beat)
    project.wait("the health file", health.exists)
    state = json.loads(health.read_text())
    assert state["hostname"] == "solo-beat"
    kinds = project.query("SELECT kind FROM django_tasks_workerstate WHERE hostname = %s",
                          ("solo-beat",))
    assert kinds == [("beat",)]
    beat.proc.send_signal(signal.SIGTERM)
    assert beat.wait_exit(30) == 0
    assert project.count("django_tasks_workerstate") == 0
    assert not health.exists()
