"""What every schedule is: an object that names its next due instant after a given one."""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from typing import ClassVar

from ..exceptions import TaskError


class ScheduleError(TaskError, ValueError):
    """A schedule was given a value it cannot use; the message names the argument and why.

    Fix the value named in the message: crontab fields take cron patterns such as ``'*/15'``,
    ``'1-5'`` or ``'mon-fri'``; intervals take a positive number of seconds or a timedelta;
    time zones take IANA names such as ``'Europe/Prague'``.
    """


class BaseSchedule(ABC):
    """A schedule: ``next_after(moment)`` is the next due instant strictly after ``moment``.

    Schedules are values (frozen dataclasses): the beat process and the ORM models build
    them, compare them and throw them away; they hold no state about past runs.
    """

    #: Which ORM model stores this kind: ``"interval"``, ``"crontab"`` or ``"clocked"``.
    kind: ClassVar[str]

    @abstractmethod
    def next_after(self, moment: dt.datetime) -> dt.datetime | None:
        """The first due instant strictly after the aware ``moment``, in UTC; None if none."""

    @abstractmethod
    def describe(self) -> str:
        """The schedule in words, for the admin: ``"every 15 minutes"``."""

    @abstractmethod
    def as_fields(self) -> Mapping[str, object]:
        """The values of this schedule's ORM model fields (see ``from_fields``)."""

    def slots_between(self, start: dt.datetime, end: dt.datetime) -> Iterator[dt.datetime]:
        """Every due instant in ``(start, end]``, oldest first (for catching up and tests)."""
        end = aware_utc(end, "slots_between() end")
        moment = self.next_after(start)
        while moment is not None and moment <= end:
            yield moment
            moment = self.next_after(moment)


def aware_utc(moment: object, what: str) -> dt.datetime:
    """``moment`` in UTC; a naive datetime is refused, since its instant is unknown."""
    if not isinstance(moment, dt.datetime):
        raise ScheduleError(f"{what} must be a datetime, not {moment!r}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ScheduleError(
            f"{what} must be an aware datetime (with tzinfo), not the naive {moment!r}; "
            "use django.utils.timezone.now() or datetime.now(UTC)"
        )
    return moment.astimezone(dt.UTC)
