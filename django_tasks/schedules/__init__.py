"""Schedules of ``manage.py taskbeat``: when a periodic task is due, with no I/O.

Importable from a settings module, before Django is set up (as ``celery.schedules`` is)::

    from django_tasks.schedules import crontab, schedule

    TASKS_BEAT_SCHEDULE = {
        "report": {"task": "app.tasks.report", "schedule": crontab(hour=7, minute=30)},
        "poll": {"task": "app.tasks.poll", "schedule": 30.0},
    }

- ``schedule(run_every)``: every ``run_every`` (seconds or a timedelta) after the last run.
- ``crontab(minute, hour, day_of_week, day_of_month, month_of_year, tz)``: wall-clock times
  in the zone ``tz`` (None: Django's ``TIME_ZONE``, read when used; UTC without settings).
- ``clocked(at)``: once, at an aware datetime.

Each has ``next_after(moment)`` (the next due instant strictly after an aware datetime, in
UTC), ``describe()`` (words for the admin), ``as_fields()`` and ``from_fields(...)`` (the
columns of the IntervalSchedule, CrontabSchedule and ClockedSchedule models).

Daylight saving. Crontab times are wall-clock times, and the rule is one for every crontab,
whether it names a time (``hour=2, minute=30``) or a frequency (``minute='*/15'``):

- **A wall-clock time that occurs twice (fall back) fires once, at its first occurrence.**
  In the repeated hour, nothing fires a second time: ``minute='*/15'`` runs at 02:00,
  02:15, 02:30, 02:45 summer time, then not again until 03:00 winter time.
- **A wall-clock time that does not occur (spring forward) fires once, at the end of the
  gap**, the first valid instant after it: 02:30 on the day Europe/Prague jumps from 02:00
  to 03:00 fires at 03:00 CEST. All the times a gap swallows fire together, once.

Equivalently: a time fires the first time the zone's clock reaches or passes it. A job
thus never runs twice for one wall time, and is never silently dropped for a day.

Day matching follows Celery, whose ``crontab`` this is: a day matches when it matches
day_of_month AND day_of_week (``crontab(day_of_month=13, day_of_week='fri')`` is Friday
the 13th). Plain cron would OR the two when both are restricted; code and schedules moved
from Celery expect AND, so the library is asked for candidates and they are filtered.

The cron library is cronsim (2.8, November 2026; by Healthchecks' author; no dependencies;
typed), chosen over croniter (7.0.0, November 2026; declared abandoned by its maintainer
in early 2025, kept since by the pallets-eco organisation; needs python-dateutil). Measured
here, on Python 3.11:

- Daylight saving, given aware datetimes, on 15 cases in Europe/Prague, America/New_York
  and Australia/Lord_Howe: both follow Debian's rule for frequent jobs (a repeated
  ``*/15`` fires twice, a skipped hourly ``:30`` is dropped), and each gets a case wrong
  under any policy: croniter fires a daily 02:30 (Lord Howe: 01:45) twice on the
  fall-back day; cronsim, started in the second pass of a repeated hour, returns a time
  before its input. So neither is handed a zone: the library does calendar arithmetic on
  naive wall-clock times (there the two agree, 300 matches running, on 8 of 9 test
  expressions), and the policy above is ours (``zones.py``), tested against a
  minute-by-minute simulation of the clock.
- Day rule: cronsim applies cron's exactly as Debian does (``0 12 */2 * 1``: odd days
  that are Mondays); croniter ORs ``*/2`` with the weekday.
- Speed of one next time (build the iterator, take one): cronsim 17-37 µs, croniter
  79-107 µs (98 against 101 µs for ``0 0 29 2 *``). ``crontab.next_after()``, zone and
  policy included, takes 21-43 µs (105 µs for 29 February), 25-30 µs at a transition.
- Words: cronsim's ``explain()`` reads well and knows the day rule, where cron-descriptor
  (2.2.1) words ``0 0 */2 * 1`` as "every 2 days, or on Monday"; so ``describe()`` needs
  no second package.

Only ``engine.py`` imports cronsim.
"""

from .base import BaseSchedule, ScheduleError
from .coerce import is_schedule, to_schedule
from .cron import CrontabFields, crontab
from .interval import ClockedFields, IntervalFields, clocked, schedule

__all__ = [
    "BaseSchedule",
    "ClockedFields",
    "CrontabFields",
    "IntervalFields",
    "ScheduleError",
    "clocked",
    "crontab",
    "is_schedule",
    "schedule",
    "to_schedule",
]
