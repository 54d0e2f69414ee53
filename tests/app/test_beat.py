"""The beat's scheduler and settings sync on the test database: what is queued, when, and
exactly once; next runs kept right on save and on update(); bad rows reported, not fatal."""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from django_tasks.beat.scheduler import Scheduler
from django_tasks.beat.sync import sync
from django_tasks.exceptions import ConfigurationError
from django_tasks.message import Message
from django_tasks.models import (
    BeatSlot,
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    QueuedMessage,
    TaskResult,
)
from django_tasks.schedules import crontab

pytestmark = pytest.mark.django_db
T0 = dt.datetime(2026, 3, 2, 9, 0, 0, tzinfo=dt.UTC)  # a Monday
ADD = "testproject.demo.tasks.add"


@pytest.fixture(autouse=True)
def _frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows compute their first run from the clock: freeze it at T0."""
    from django_tasks import clock

    monkeypatch.setattr(clock, "now", lambda: T0)


def every(seconds: int, name: str = "every", **fields: Any) -> PeriodicTask:
    interval, _ = IntervalSchedule.objects.get_or_create(every=seconds, period="seconds")
    return PeriodicTask.objects.create(name=name, task=ADD, interval=interval, args="[1, 2]",
                                       **fields)


def cron(name: str = "cron", **schedule: Any) -> PeriodicTask:
    tab = CrontabSchedule.objects.create(**schedule)
    return PeriodicTask.objects.create(name=name, task=ADD, crontab=tab, args="[1, 2]")


def queued() -> list[Message]:
    return [Message.decode(body) for body in
            QueuedMessage.objects.order_by("id").values_list("body", flat=True)]


def refresh(row: PeriodicTask) -> PeriodicTask:
    row.refresh_from_db()
    return row


# -- next runs ------------------------------------------------------------------------------


def test_save_computes_the_first_run_one_interval_on() -> None:
    assert every(30).next_run_at == T0 + dt.timedelta(seconds=30)


def test_a_crontab_first_runs_at_its_next_wall_time() -> None:
    assert cron(minute="15", hour="*").next_run_at == T0.replace(minute=15)


def test_start_time_delays_the_first_run() -> None:
    later = T0 + dt.timedelta(hours=2)
    assert every(30, start_time=later).next_run_at == later


def test_a_clocked_task_runs_at_its_time() -> None:
    at = ClockedSchedule.objects.create(clocked_time=T0 + dt.timedelta(minutes=5))
    row = PeriodicTask.objects.create(name="once", task=ADD, clocked=at, args="[1, 2]")
    assert row.next_run_at == at.clocked_time


def test_a_disabled_task_has_no_next_run() -> None:
    assert every(30, enabled=False).next_run_at is None


def test_exactly_one_schedule_is_enforced_by_the_database() -> None:
    interval = IntervalSchedule.objects.create(every=1, period="minutes")
    tab = CrontabSchedule.objects.create()
    with pytest.raises(IntegrityError), transaction.atomic():
        PeriodicTask.objects.create(name="two", task=ADD, interval=interval, crontab=tab)
    with pytest.raises(IntegrityError), transaction.atomic():
        PeriodicTask.objects.create(name="none", task=ADD)


def test_update_clears_next_run_and_the_beat_computes_it() -> None:
    row = every(30)
    minutely = IntervalSchedule.objects.create(every=1, period="minutes")
    PeriodicTask.objects.filter(pk=row.pk).update(interval=minutely)
    assert refresh(row).next_run_at is None
    report = Scheduler("b1").tick(T0)
    assert report.computed == 1
    assert refresh(row).next_run_at == T0 + dt.timedelta(minutes=1)


def test_editing_a_schedule_makes_its_tasks_compute_again() -> None:
    row = cron(minute="0", hour="12")
    assert row.next_run_at == T0.replace(hour=12)
    CrontabSchedule.objects.filter(pk=row.crontab_id).update(hour="10")
    assert refresh(row).next_run_at is None
    Scheduler("b1").tick(T0)
    assert refresh(row).next_run_at == T0.replace(hour=10)
    tab = row.crontab
    assert tab is not None
    tab.hour = "11"
    tab.save()
    Scheduler("b1").tick(T0)
    assert refresh(row).next_run_at == T0.replace(hour=11)


def test_an_edit_never_fires_at_once() -> None:
    row = every(60)
    row.last_run_at = T0 - dt.timedelta(hours=5)  # long overdue
    row.save()
    assert row.next_run_at == T0 + dt.timedelta(seconds=60)


# -- queueing -------------------------------------------------------------------------------


def test_a_due_task_is_queued_with_headers_naming_the_schedule() -> None:
    row = every(30)
    due = T0 + dt.timedelta(seconds=30)
    report = Scheduler("b1").tick(due)
    [message] = queued()
    assert report.queued == 1 and report.lateness == [0.0]
    assert (message.task, message.args) == (ADD, (1, 2))
    assert message.headers["periodic_task_name"] == "every"
    assert message.headers["periodic_task_due"] == due.isoformat()
    row = refresh(row)
    assert (row.total_run_count, row.last_run_at, row.last_task_id) == (1, due, message.id)
    assert row.next_run_at == due + dt.timedelta(seconds=30)
    assert TaskResult.objects.get(task_id=message.id).state == "PENDING"
    [slot] = BeatSlot.objects.all()
    assert (slot.due_at, slot.task_id, slot.beat) == (due, message.id, "b1")


def test_nothing_is_queued_before_it_is_due() -> None:
    every(30)
    assert Scheduler("b1").tick(T0 + dt.timedelta(seconds=29)).queued == 0
    assert queued() == []


def test_two_beats_on_one_slot_queue_it_once() -> None:
    every(30)
    due = T0 + dt.timedelta(seconds=30)
    first, second = Scheduler("b1"), Scheduler("b2")
    assert first.tick(due).queued == 1
    assert second.tick(due).queued == 0
    assert len(queued()) == 1


def test_a_slot_claimed_elsewhere_is_not_queued_again() -> None:
    row = every(30)
    due = T0 + dt.timedelta(seconds=30)
    BeatSlot.objects.create(periodic_task=row, due_at=due, task_id="elsewhere",
                            queued_at=due, beat="other")
    report = Scheduler("b1").tick(due)
    assert (report.queued, report.skipped) == (0, 1)
    assert queued() == []
    assert refresh(row).next_run_at == due + dt.timedelta(seconds=30)  # it moves on anyway


def test_a_missed_stretch_runs_once_and_keeps_the_cadence() -> None:
    row = every(30)
    late = T0 + dt.timedelta(minutes=10, seconds=5)  # the beat was down for ten minutes
    assert Scheduler("b1").tick(late).queued == 1
    assert refresh(row).next_run_at == T0 + dt.timedelta(minutes=10, seconds=30)
    assert Scheduler("b1").tick(late + dt.timedelta(seconds=1)).queued == 0


def test_the_runs_a_late_tick_skips_are_logged_and_counted(
        caplog: pytest.LogCaptureFixture) -> None:
    every(30, name="half-minute")
    beat = Scheduler("b1")
    with caplog.at_level(logging.WARNING, "django_tasks.beat"):
        on_time = beat.tick(T0 + dt.timedelta(seconds=31))
        assert (on_time.queued, on_time.missed, caplog.records) == (1, 0, [])
        late = beat.tick(T0 + dt.timedelta(seconds=125))  # due at 60; 90 and 120 passed
    assert (late.queued, late.missed) == (1, 1)
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert ("Periodic task half-minute missed its runs due from 2026-03-02T09:01:30+00:00 to "
            "before 2026-03-02T09:02:30+00:00") in record.getMessage()
    assert "its run due at 2026-03-02T09:01:00+00:00 was queued 65.0s late" \
        in record.getMessage()


def test_many_tasks_missing_runs_log_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    for i in range(12):
        every(30, name=f"t{i}")
    with caplog.at_level(logging.DEBUG, "django_tasks.beat"):
        assert Scheduler("b1").tick(T0 + dt.timedelta(minutes=5)).missed == 12
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["12 periodic tasks missed runs (the beat was down or late, or the "
                        "clock jumped): each queued one run, late, and goes on with its "
                        "cadence (each is logged at DEBUG)"]


def test_a_crontab_after_downtime_runs_once_then_on_its_times() -> None:
    row = cron(minute="*/5")
    late = T0 + dt.timedelta(hours=3, minutes=2)
    assert Scheduler("b1").tick(late).queued == 1
    assert refresh(row).next_run_at == T0 + dt.timedelta(hours=3, minutes=5)


@pytest.mark.parametrize("jump", [dt.timedelta(hours=1), dt.timedelta(hours=-1)])
def test_a_clock_that_jumps_causes_no_repeats_and_no_burst(jump: dt.timedelta) -> None:
    every(60)
    beat = Scheduler("b1")
    moment, count = T0, 0
    for _ in range(10):  # ten minutes, with a jump in the middle
        moment += dt.timedelta(minutes=1)
        count += beat.tick(moment).queued
        if moment == T0 + dt.timedelta(minutes=5):
            moment += jump
            count += beat.tick(moment).queued
    slots = list(BeatSlot.objects.values_list("due_at", flat=True))
    assert len(slots) == len(set(slots)) == count
    assert count <= 11


def test_a_one_off_task_runs_once_then_is_disabled() -> None:
    row = every(30, one_off=True)
    Scheduler("b1").tick(T0 + dt.timedelta(seconds=30))
    row = refresh(row)
    assert (row.enabled, row.next_run_at, row.total_run_count) == (False, None, 1)
    assert Scheduler("b1").tick(T0 + dt.timedelta(hours=1)).queued == 0


def test_a_clocked_task_runs_once() -> None:
    at = ClockedSchedule.objects.create(clocked_time=T0 + dt.timedelta(minutes=5))
    row = PeriodicTask.objects.create(name="once", task=ADD, clocked=at, args="[1, 2]")
    assert Scheduler("b1").tick(T0 + dt.timedelta(minutes=6)).queued == 1
    assert refresh(row).enabled is False
    assert Scheduler("b1").tick(T0 + dt.timedelta(minutes=7)).queued == 0


def test_an_expired_task_is_disabled_without_running() -> None:
    row = every(30, expires=T0 + dt.timedelta(seconds=10))
    assert Scheduler("b1").tick(T0 + dt.timedelta(seconds=30)).queued == 0
    assert refresh(row).enabled is False


def test_expire_seconds_make_each_run_expire() -> None:
    every(30, expire_seconds=5)
    due = T0 + dt.timedelta(seconds=30)
    Scheduler("b1").tick(due)
    [message] = queued()
    assert message.expires == due + dt.timedelta(seconds=5)


def test_queue_and_priority_come_from_the_row() -> None:
    every(30, queue="mail", priority=7)
    Scheduler("b1").tick(T0 + dt.timedelta(seconds=30))
    [message] = queued()
    assert (message.queue, message.priority) == ("mail", 7)


def test_a_batch_larger_than_one_claim_is_queued_in_full() -> None:
    for index in range(7):
        every(30, name=f"t{index}")
    report = Scheduler("b1", batch=3).tick(T0 + dt.timedelta(seconds=30))
    assert report.queued == 7 and len(queued()) == 7


def test_old_slots_are_pruned() -> None:
    row = every(30)
    BeatSlot.objects.create(periodic_task=row, due_at=T0 - dt.timedelta(days=1),
                            task_id="old", queued_at=T0 - dt.timedelta(days=1), beat="b")
    Scheduler("b1").tick(T0)
    assert not BeatSlot.objects.filter(task_id="old").exists()


# -- bad rows: reported, never fatal ----------------------------------------------------------


def test_rows_the_beat_cannot_queue_are_reported_once_and_the_others_fire(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, "django_tasks.beat")
    interval = IntervalSchedule.objects.create(every=30, period="seconds")
    PeriodicTask.objects.create(name="unknown", task="no.such.task", interval=interval)
    PeriodicTask.objects.create(name="bad-args", task=ADD, interval=interval, args="[1,")
    PeriodicTask.objects.create(name="wrong-args", task=ADD, interval=interval, args="[1]")
    every(30, name="good")
    beat = Scheduler("b1")
    due = T0 + dt.timedelta(seconds=30)
    assert beat.tick(due).queued == 1
    assert beat.tick(due + dt.timedelta(seconds=30)).queued == 1
    text = caplog.text
    assert text.count("Skipping periodic task unknown") == 1
    assert "'no.such.task' is not registered" in text
    assert text.count("Skipping periodic task bad-args") == 1 and "not valid JSON" in text
    assert "Skipping periodic task wrong-args" in text and "missing a required" in text
    assert [m.headers["periodic_task_name"] for m in queued()] == ["good", "good"]


def test_a_schedule_that_cannot_be_read_is_left_alone_until_fixed(
        caplog: pytest.LogCaptureFixture) -> None:
    tab = CrontabSchedule.objects.create(minute="*", timezone="Mars/Olympus_Mons")
    row = PeriodicTask.objects.create(name="mars", task=ADD, crontab=tab, args="[1, 2]")
    assert row.next_run_at is None
    beat = Scheduler("b1")
    beat.tick(T0)
    beat.tick(T0 + dt.timedelta(seconds=1))
    assert caplog.text.count("Skipping periodic task mars") == 1
    assert "Mars/Olympus_Mons" in caplog.text
    CrontabSchedule.objects.filter(pk=tab.pk).update(timezone="Europe/Prague")
    beat.tick(T0 + dt.timedelta(seconds=2))
    assert refresh(row).next_run_at == T0 + dt.timedelta(minutes=1)


def test_the_model_forms_refuse_bad_schedules_on_their_field() -> None:
    with pytest.raises(ValidationError) as caught:
        CrontabSchedule(minute="61").full_clean()
    assert "61 is not in 0-59" in str(caught.value.message_dict["minute"])
    with pytest.raises(ValidationError) as caught:
        CrontabSchedule(timezone="Nowhere/Special").full_clean()
    assert "timezone" in caught.value.message_dict
    interval = IntervalSchedule.objects.create(every=1, period="minutes")
    with pytest.raises(ValidationError) as caught:
        PeriodicTask(name="x", task=ADD, interval=interval, args='{"a": 1}').full_clean()
    assert "args must be a JSON list" in str(caught.value.message_dict["args"])


# -- daylight saving, through the beat --------------------------------------------------------


@pytest.mark.parametrize(("day", "due"), [
    # CET -> CEST at 01:00 UTC: 02:30 does not exist; it is queued once, at the gap's end (03:00).
    (dt.datetime(2026, 3, 29, 0, 0, tzinfo=dt.UTC), dt.datetime(2026, 3, 29, 1, 0, tzinfo=dt.UTC)),
    # CEST -> CET at 01:00 UTC: 02:30 happens twice; it is queued once, at the first.
    (dt.datetime(2026, 10, 25, 0, 0, tzinfo=dt.UTC),
     dt.datetime(2026, 10, 25, 0, 30, tzinfo=dt.UTC)),
], ids=["spring gap", "autumn overlap"])
def test_a_local_time_across_a_dst_change_is_queued_once(day: dt.datetime,
                                                          due: dt.datetime) -> None:
    row = cron(minute="30", hour="2", timezone="Europe/Prague")
    beat = Scheduler("b1")
    PeriodicTask.objects.filter(pk=row.pk).update(next_run_at=None)
    beat.tick(day)
    moment, count = day, 0
    while moment < day + dt.timedelta(hours=4):
        moment += dt.timedelta(minutes=1)
        count += beat.tick(moment).queued
    assert count == 1
    [slot] = BeatSlot.objects.all()
    assert slot.due_at == due


# -- TASKS_BEAT_SCHEDULE ----------------------------------------------------------------------


SEED = {
    "add-every-30-seconds": {"task": ADD, "schedule": 30.0, "args": (16, 16)},
    "monday-morning": {"task": ADD, "schedule": crontab(hour=7, minute=30, day_of_week=1),
                       "args": (2, 3), "options": {"queue": "mail", "priority": 5}},
}


def test_the_settings_schedule_becomes_rows() -> None:
    report = sync(SEED)
    assert sorted(report.created) == sorted(SEED)
    interval = PeriodicTask.objects.get(name="add-every-30-seconds")
    assert (interval.task, json.loads(interval.args), interval.source) == (ADD, [16, 16],
                                                                            "settings")
    assert interval.interval is not None and interval.interval.every == 30
    monday = PeriodicTask.objects.get(name="monday-morning")
    assert monday.crontab is not None
    assert (monday.crontab.hour, monday.crontab.minute, monday.crontab.day_of_week) == (
        "7", "30", "1")
    assert (monday.queue, monday.priority) == ("mail", 5)
    assert monday.next_run_at == dt.datetime(2026, 3, 9, 7, 30, tzinfo=dt.UTC)
    assert sync(SEED).created == []  # again: nothing to do


def test_an_admin_edit_is_kept_while_the_settings_entry_is_unchanged(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "django_tasks.beat")
    sync(SEED)
    row = PeriodicTask.objects.get(name="add-every-30-seconds")
    row.args = "[1, 1]"
    row.save()
    report = sync(SEED)
    assert report.kept_admin_edit == ["add-every-30-seconds"]
    assert refresh(row).args == "[1, 1]"
    assert "the admin edit is kept" in caplog.text


def test_a_changed_settings_entry_wins_over_an_admin_edit_and_says_so(
        caplog: pytest.LogCaptureFixture) -> None:
    sync(SEED)
    row = PeriodicTask.objects.get(name="add-every-30-seconds")
    row.args = "[1, 1]"
    row.save()
    changed = {**SEED, "add-every-30-seconds": {**SEED["add-every-30-seconds"],
                                                "schedule": 60.0}}
    report = sync(changed)
    assert report.updated == ["add-every-30-seconds"]
    row = refresh(row)
    assert json.loads(row.args) == [16, 16]
    assert row.interval is not None
    assert row.interval.schedule().run_every == dt.timedelta(seconds=60)
    assert "the settings win, the admin edit is overwritten" in caplog.text


def test_an_entry_removed_from_the_settings_is_disabled_not_deleted() -> None:
    sync(SEED)
    report = sync({"monday-morning": SEED["monday-morning"]})
    assert report.disabled == ["add-every-30-seconds"]
    row = PeriodicTask.objects.get(name="add-every-30-seconds")
    assert row.enabled is False


@pytest.mark.parametrize(
    ("setting", "reason"),
    [
        ([], "must be a dict"),
        ({"x": {"schedule": 30}}, "'task' must name a task"),
        ({"x": {"task": ADD}}, "is not a schedule"),
        ({"x": {"task": ADD, "schedule": "hourly"}}, "is not a schedule"),
        ({"x": {"task": ADD, "schedule": 30, "args": [object()]}}, "cannot be serialized"),
        ({"x": {"task": ADD, "schedule": 30, "sometimes": True}}, "unknown key"),
        ({"x": {"task": ADD, "schedule": 30, "options": {"priority": 11}}}, "priority"),
        ({"x": {"task": ADD, "schedule": 30, "options": {"routing": "q"}}}, "'options' may"),
    ],
)
def test_a_bad_settings_entry_is_a_configuration_error_naming_it(setting: Any,
                                                                  reason: str) -> None:
    with pytest.raises(ConfigurationError, match=reason):
        sync(setting)
