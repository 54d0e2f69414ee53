"""Periodic tasks and their schedules, named as django-celery-beat names them.

A ``PeriodicTask`` has exactly one of ``interval``, ``crontab`` and ``clocked`` (a database
constraint says so) and a stored ``next_run_at``, which the beat reads to find due rows with
one indexed query. Saving a row (the admin, the ORM) computes it; ``QuerySet.update()`` on
periodic tasks or on schedules clears it, and the beat computes it again within a tick, so
that no change goes unnoticed. Each enqueue of a periodic task claims a ``BeatSlot`` row,
unique per (task, due time), in the same transaction.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from .. import clock
from ..schedules import BaseSchedule, ScheduleError, clocked, crontab, schedule

PERIODS = [("days", "days"), ("hours", "hours"), ("minutes", "minutes"),
           ("seconds", "seconds"), ("microseconds", "microseconds")]


class ScheduleQuerySet(models.QuerySet[Any]):
    def update(self, **changes: Any) -> int:
        """Update, and make the beat compute the next run of every task on these schedules."""
        ids = list(self.values_list("pk", flat=True))
        count = super().update(**changes)
        field = self.model.periodic_field
        PeriodicTask.objects.filter(**{f"{field}__in": ids}).update(next_run_at=None)
        return count


class _Schedule(models.Model):
    """What the three schedule models share: they become plain schedule objects."""

    #: The PeriodicTask field that points at this model.
    periodic_field = ""
    objects = ScheduleQuerySet.as_manager()

    class Meta:
        abstract = True

    def __str__(self) -> str:
        try:
            return self.schedule().describe()
        except ScheduleError as exc:
            return f"invalid: {exc}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        super().save(*args, **kwargs)
        PeriodicTask.objects.filter(**{self.periodic_field: self}).update(next_run_at=None)

    def schedule(self) -> BaseSchedule:
        raise NotImplementedError

    def clean(self) -> None:
        try:
            self.schedule()
        except ScheduleError as exc:
            raise ValidationError(_field_errors(str(exc), self)) from None


def _field_errors(message: str, instance: models.Model) -> dict[str, str] | str:
    """A schedule's error under the form field it names (``crontab minute='61': …``)."""
    for field in instance._meta.concrete_fields:
        if f" {field.name}=" in message or (field.name == "timezone" and " tz=" in message):
            return {field.name: message}
    return message


class IntervalSchedule(_Schedule):
    """Every ``every`` ``period`` (15 minutes), counted from the last run."""

    every = models.PositiveIntegerField(validators=[MinValueValidator(1)],
                                        help_text="how many periods between runs")
    period = models.CharField(max_length=24, choices=PERIODS)
    periodic_field = "interval"

    class Meta:
        verbose_name = "interval"
        ordering = ["period", "every"]
        constraints = [models.CheckConstraint(condition=Q(every__gte=1),
                                              name="tasks_interval_every_positive")]

    def schedule(self) -> schedule:
        return schedule.from_fields(self.every, self.period)


class CrontabSchedule(_Schedule):
    """Wall-clock times, cron's five fields, in a time zone (blank: ``TIME_ZONE``)."""

    minute = models.CharField(max_length=240, default="*", help_text="0-59, e.g. */15 or 0,30")
    hour = models.CharField(max_length=96, default="*", help_text="0-23, e.g. 7 or 9-17")
    day_of_week = models.CharField(max_length=64, default="*",
                                   help_text="0-6 with Sunday 0 (or 7), or mon-fri")
    day_of_month = models.CharField(max_length=124, default="*", help_text="1-31")
    month_of_year = models.CharField(max_length=64, default="*", help_text="1-12, or jan-mar")
    timezone = models.CharField(max_length=63, blank=True, default="",
                                help_text="an IANA zone such as Europe/Prague; blank: the "
                                          "project's TIME_ZONE")
    periodic_field = "crontab"

    class Meta:
        verbose_name = "crontab"
        ordering = ["month_of_year", "day_of_month", "day_of_week", "hour", "minute"]

    def schedule(self) -> crontab:
        return crontab.from_fields(self.minute, self.hour, self.day_of_week, self.day_of_month,
                                   self.month_of_year, self.timezone or None)


class ClockedSchedule(_Schedule):
    """Once, at ``clocked_time``."""

    clocked_time = models.DateTimeField()
    periodic_field = "clocked"

    class Meta:
        verbose_name = "clocked"
        ordering = ["clocked_time"]

    def schedule(self) -> clocked:
        return clocked(self.clocked_time)


class PeriodicTaskQuerySet(models.QuerySet["PeriodicTask"]):
    def update(self, **changes: Any) -> int:
        """Update; unless ``next_run_at`` is set too, the beat computes it again (a bulk
        edit of schedules, enabled flags or start times is noticed within a tick)."""
        changes.setdefault("next_run_at", None)
        changes.setdefault("date_changed", clock.now())
        return super().update(**changes)

    def record(self, **bookkeeping: Any) -> int:
        """Write what the beat keeps (``last_task_id``, run counts) without it counting as
        an edit: the next run stays, and ``date_changed`` too."""
        return super().update(**bookkeeping)

    def due(self, now: dt.datetime) -> PeriodicTaskQuerySet:
        return self.filter(enabled=True, next_run_at__lte=now)

    def to_compute(self) -> PeriodicTaskQuerySet:
        return self.filter(enabled=True, next_run_at__isnull=True)


class PeriodicTask(models.Model):
    """A task the beat queues on a schedule."""

    name = models.CharField(max_length=200, unique=True, help_text="a name of its own")
    task = models.CharField(max_length=200, help_text="the registered task name, "
                                                      "e.g. app.tasks.report")
    interval = models.ForeignKey(IntervalSchedule, on_delete=models.CASCADE, null=True,
                                 blank=True)
    crontab = models.ForeignKey(CrontabSchedule, on_delete=models.CASCADE, null=True,
                                blank=True)
    clocked = models.ForeignKey(ClockedSchedule, on_delete=models.CASCADE, null=True,
                                blank=True)
    args = models.TextField(blank=True, default="[]", help_text='a JSON list, e.g. [16, 16]')
    kwargs = models.TextField(blank=True, default="{}",
                              help_text='a JSON object, e.g. {"user_id": 5}')
    queue = models.CharField(max_length=200, blank=True, null=True, default=None)
    priority = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MaxValueValidator(9)], help_text="0-9")
    expires = models.DateTimeField(null=True, blank=True,
                                   help_text="queued tasks not run by then are revoked")
    expire_seconds = models.PositiveIntegerField(
        null=True, blank=True, help_text="each queued run expires this many seconds later")
    one_off = models.BooleanField(default=False, help_text="run once, then disable")
    start_time = models.DateTimeField(null=True, blank=True, help_text="not before this")
    enabled = models.BooleanField(default=True)
    last_run_at = models.DateTimeField(null=True, blank=True, editable=False)
    total_run_count = models.PositiveIntegerField(default=0, editable=False)
    date_changed = models.DateTimeField(auto_now=True)
    description = models.TextField(blank=True)
    next_run_at = models.DateTimeField(null=True, blank=True, editable=False,
                                       help_text="when the beat queues it next")
    last_task_id = models.CharField(max_length=255, blank=True, default="", editable=False)
    source = models.CharField(max_length=16, default="database", editable=False,
                              choices=[("database", "database"), ("settings", "settings")])
    #: The TASKS_BEAT_SCHEDULE entry as last synced (JSON), to tell an admin edit apart.
    synced = models.TextField(blank=True, default="", editable=False)

    objects = PeriodicTaskQuerySet.as_manager()

    class Meta:
        verbose_name = "periodic task"
        ordering = ["name"]
        permissions = [("run_periodictask", "Can run a periodic task now")]
        constraints = [
            models.CheckConstraint(
                condition=(Q(interval__isnull=False, crontab__isnull=True, clocked__isnull=True)
                           | Q(interval__isnull=True, crontab__isnull=False,
                               clocked__isnull=True)
                           | Q(interval__isnull=True, crontab__isnull=True,
                               clocked__isnull=False)),
                name="tasks_periodic_one_schedule",
                violation_error_message="Choose exactly one schedule: an interval, a "
                                        "crontab or a clocked time.",
            ),
            models.CheckConstraint(condition=Q(priority__isnull=True) | Q(priority__lte=9),
                                   name="tasks_periodic_priority"),
        ]
        indexes = [models.Index(fields=["next_run_at"], condition=Q(enabled=True),
                                name="tasks_periodic_due_idx")]

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        try:
            self.next_run_at = self.first_run_after(clock.now())
        except (ScheduleError, ValueError):
            self.next_run_at = None  # the beat reports it, and the admin form refuses it
        if "update_fields" in kwargs and kwargs["update_fields"] is not None:
            kwargs["update_fields"] = {*kwargs["update_fields"], "next_run_at",
                                       "date_changed"}
        super().save(*args, **kwargs)

    # -- the schedule -------------------------------------------------------------------

    @property
    def schedule_model(self) -> _Schedule | None:
        return self.interval or self.crontab or self.clocked

    def schedule(self) -> BaseSchedule:
        """The plain schedule object; :class:`ScheduleError` if the row holds a bad one."""
        model = self.schedule_model
        if model is None:
            raise ScheduleError(f"periodic task {self.name!r} has no schedule")
        return model.schedule()

    def first_run_after(self, now: dt.datetime) -> dt.datetime | None:
        """When this task is next due, computed afresh (after a save or an edit): never in
        the past, so that an edit fires nothing at once. None: nothing is due any more."""
        if not self.enabled:
            return None
        plan = self.schedule()
        start = self.start_time
        if isinstance(plan, clocked):
            return None if self.last_run_at else plan.at
        if isinstance(plan, schedule):
            anchor = self.last_run_at or now
            due = anchor + plan.run_every
            if due <= now:
                due = now + plan.run_every
            return max(due, start) if start else due
        after = max(now, start - dt.timedelta(microseconds=1)) if start else now
        return plan.next_after(after)

    def run_after(self, due: dt.datetime, now: dt.datetime) -> dt.datetime | None:
        """The next due time after queueing the run due at ``due``: a missed stretch (the
        beat was down) is not caught up, only the first slot after ``now`` counts."""
        plan = self.schedule()
        if self.one_off or isinstance(plan, clocked):
            return None
        if isinstance(plan, schedule):
            step = plan.run_every
            late = max(0, int((now - due) / step))
            return due + step * (late + 1)  # keeps the cadence, skips what was missed
        return plan.next_after(max(due, now))

    # -- arguments --------------------------------------------------------------------

    def call_arguments(self) -> tuple[list[Any], dict[str, Any]]:
        """``args`` and ``kwargs`` parsed; ValueError saying which is wrong and how."""
        try:
            args = json.loads(self.args or "[]")
        except ValueError as exc:
            raise ValueError(f"args is not valid JSON ({exc}); write a list, e.g. [1, 2]") \
                from None
        try:
            kwargs = json.loads(self.kwargs or "{}")
        except ValueError as exc:
            raise ValueError(f"kwargs is not valid JSON ({exc}); write an object, e.g. "
                             '{"x": 1}') from None
        if not isinstance(args, list):
            raise ValueError(f"args must be a JSON list, not {type(args).__name__}")
        if not isinstance(kwargs, dict):
            raise ValueError(f"kwargs must be a JSON object, not {type(kwargs).__name__}")
        return args, kwargs

    def clean(self) -> None:
        errors: dict[str, str] = {}
        chosen = [n for n in ("interval", "crontab", "clocked") if getattr(self, f"{n}_id")]
        if len(chosen) != 1:
            errors["interval"] = ("Choose exactly one schedule: an interval, a crontab or a "
                                  "clocked time.")
        try:
            self.call_arguments()
        except ValueError as exc:
            field = "kwargs" if str(exc).startswith("kwargs") else "args"
            errors[field] = str(exc)
        if errors:
            raise ValidationError(errors)

class BeatSlot(models.Model):
    """One queued run of a periodic task: (task, due time) is claimed once, in the same
    transaction as the enqueue, by whichever beat gets there first."""

    periodic_task = models.ForeignKey(PeriodicTask, on_delete=models.CASCADE,
                                      related_name="slots")
    due_at = models.DateTimeField()
    task_id = models.CharField(max_length=255)
    queued_at = models.DateTimeField()
    beat = models.CharField(max_length=255, help_text="the beat process that queued it")

    class Meta:
        verbose_name = "beat slot"
        constraints = [models.UniqueConstraint(fields=["periodic_task", "due_at"],
                                               name="tasks_beat_slot_once")]
        indexes = [models.Index(fields=["queued_at"], name="tasks_beat_slot_age_idx")]

    def __str__(self) -> str:
        return f"{self.periodic_task_id} at {self.due_at.isoformat()}"
