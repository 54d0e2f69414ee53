"""What ``TASKS_BEAT_SCHEDULE`` accepts as an entry's ``"schedule"``, as Celery's beat does."""

from __future__ import annotations

import datetime as dt

from .base import BaseSchedule, ScheduleError
from .interval import schedule


def to_schedule(value: object) -> BaseSchedule:
    """A schedule object for ``value``: a number of seconds, a timedelta, or a schedule."""
    if isinstance(value, BaseSchedule):
        return value
    if isinstance(value, int | float | dt.timedelta) and not isinstance(value, bool):
        return schedule(value)
    raise ScheduleError(
        f"{value!r} is not a schedule: use a number of seconds, a timedelta, "
        "schedule(...), crontab(...) or clocked(...)"
    )


def is_schedule(value: object) -> bool:
    """Whether ``to_schedule(value)`` would succeed."""
    try:
        to_schedule(value)
    except ScheduleError:
        return False
    return True
