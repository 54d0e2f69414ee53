"""``crontab``: wall-clock times in a time zone, with cron's field syntax."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import ClassVar, TypedDict
from zoneinfo import ZoneInfo

from . import engine
from .base import BaseSchedule, ScheduleError, aware_utc
from .cronspec import Field, check_days, read_field
from .zones import default_zone, load_zone, repeat_end, wall_to_instant, zone_key

#: What a crontab field accepts: ``30``, ``"*/15"``, ``"mon-fri"``, ``[0, 30]``.
CronField = int | str | Iterable[int]

#: cron's order of the five fields, which ``expression`` and ``from_expression`` use.
CRON_ORDER = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")

_EVERY_N_MINUTES = re.compile(r"\*/(\d+) \* \* \* \*")
_WEEKDAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
#: Candidate days looked at for a match of both day fields (Friday the 13th: a few dozen).
_MOST_CANDIDATES = 100_000


class CrontabFields(TypedDict):
    """The columns of a CrontabSchedule row; ``timezone`` is ``""`` for Django's TIME_ZONE."""

    minute: str
    hour: str
    day_of_week: str
    day_of_month: str
    month_of_year: str
    timezone: str


@dataclass(frozen=True, init=False, repr=False)
class crontab(BaseSchedule):  # lower case: Celery's name
    """Due at the wall-clock times the five fields match, in the zone ``tz``.

    ``crontab(hour=7, minute=30, day_of_week="mon-fri", tz="Europe/Prague")``. ``tz=None``
    means Django's ``TIME_ZONE`` at the time of use. The fields keep the text given
    (normalised: ``'mon-fri'``, ``'7'``); two crontabs are equal when they fire at the same
    times in the same zone (``'mon-fri' == '1-5'``).

    Day matching follows Celery: a day matches when it matches day_of_month AND
    day_of_week (``crontab(day_of_month=13, day_of_week='fri')`` is Friday the 13th).
    Plain cron ORs the two when both are restricted; code moved from Celery expects AND.
    """

    kind: ClassVar[str] = "crontab"

    minute: str = field(compare=False)
    hour: str = field(compare=False)
    day_of_week: str = field(compare=False)
    day_of_month: str = field(compare=False)
    month_of_year: str = field(compare=False)
    #: The IANA zone name, or None for Django's TIME_ZONE when used.
    tz: str | None = field(compare=False)
    #: The five fields as numbers in cron's order (``"30 7 * * 1-5"``), as the library reads it.
    expression: str = field(init=False, compare=False)
    _meaning: tuple[object, ...] = field(init=False, repr=False)
    #: With both day fields restricted: the days of month and the weekdays (cron numbers)
    #: that must both match; the library, which ORs them, is asked for candidates only.
    _both_days: tuple[frozenset[int], frozenset[int]] | None = field(
        init=False, repr=False, compare=False)

    def __init__(self, minute: CronField = "*", hour: CronField = "*",
                 day_of_week: CronField = "*", day_of_month: CronField = "*",
                 month_of_year: CronField = "*", tz: str | ZoneInfo | None = None) -> None:
        given = {"minute": minute, "hour": hour, "day_of_week": day_of_week,
                 "day_of_month": day_of_month, "month_of_year": month_of_year}
        read = {name: read_field(name, value) for name, value in given.items()}
        check_days(read["day_of_month"], read["month_of_year"], read["day_of_week"])
        expression = " ".join(read[name].cron for name in CRON_ORDER)
        engine.check(expression)
        zone = zone_key(tz, "crontab tz")
        for name, parsed in read.items():
            object.__setattr__(self, name, parsed.text)
        object.__setattr__(self, "tz", zone)
        object.__setattr__(self, "expression", expression)
        object.__setattr__(self, "_meaning", _meaning(read, zone))
        both = None
        if not (read["day_of_month"].starred or read["day_of_week"].starred):
            both = (read["day_of_month"].values,
                    frozenset(day % 7 for day in read["day_of_week"].values))
        object.__setattr__(self, "_both_days", both)

    @classmethod
    def from_expression(cls, expression: str, tz: str | ZoneInfo | None = None) -> crontab:
        """A crontab from a five-field cron line: ``crontab.from_expression("30 7 * * 1")``."""
        parts = expression.split()
        if len(parts) != len(CRON_ORDER):
            raise ScheduleError(
                f"crontab expression {expression!r}: expected 5 fields "
                "(minute hour day_of_month month_of_year day_of_week)"
            )
        return cls(**dict(zip(CRON_ORDER, parts, strict=True)), tz=tz)

    @classmethod
    def from_fields(cls, minute: CronField = "*", hour: CronField = "*",
                    day_of_week: CronField = "*", day_of_month: CronField = "*",
                    month_of_year: CronField = "*",
                    timezone: str | ZoneInfo | None = None) -> crontab:
        """From a CrontabSchedule row; a blank ``timezone`` means Django's TIME_ZONE."""
        return cls(minute, hour, day_of_week, day_of_month, month_of_year, tz=timezone or None)

    def as_fields(self) -> CrontabFields:
        return CrontabFields(minute=self.minute, hour=self.hour, day_of_week=self.day_of_week,
                             day_of_month=self.day_of_month,
                             month_of_year=self.month_of_year, timezone=self.tz or "")

    def zone(self) -> ZoneInfo:
        """The zone of the wall-clock times: ``tz``, else Django's TIME_ZONE now."""
        return load_zone(self.tz, "crontab tz") if self.tz else default_zone()

    def next_after(self, moment: dt.datetime) -> dt.datetime:
        """The next wall-clock match after ``moment``, as an instant under the DST policy.

        Wall-clock times map to instants in order, so the next match after the wall time of
        ``moment`` is the answer, except in the second pass through a repeated hour: the
        times still to be shown there fired in the first pass, so the search starts where
        the repetition ends. The loop re-checks, should a zone hold a stranger transition.
        """
        moment = aware_utc(moment, "next_after() moment")
        zone = self.zone()
        local = moment.astimezone(zone)
        wall = local.replace(tzinfo=None, fold=0)
        if local.fold:
            wall = max(wall, repeat_end(local, zone) - dt.timedelta(seconds=1))
        while True:
            wall = self._next_wall(wall)
            due = wall_to_instant(wall, zone)
            if due > moment:
                return due

    def _next_wall(self, wall: dt.datetime) -> dt.datetime:
        """The next matching wall time: the library's next, where both day fields are
        restricted filtered to days that match both (the library matches either)."""
        for _ in range(_MOST_CANDIDATES):
            wall = engine.next_wall_time(self.expression, wall)
            if self._both_days is None:
                return wall
            days, weekdays = self._both_days
            if wall.day in days and (wall.weekday() + 1) % 7 in weekdays:
                return wall
        raise ScheduleError(f"{self!r} matches no day in the next {_MOST_CANDIDATES} "
                            "candidates")

    def describe(self) -> str:
        """``"at 07:30 on Monday (Europe/Prague)"``, in cronsim's English, zone appended."""
        every = _EVERY_N_MINUTES.fullmatch(self.expression)
        if every and 60 % int(every[1]) == 0:
            words = f"every {every[1]} minutes"
        elif self._both_days is not None:
            parts = self.expression.split()
            words = engine.explain(" ".join([*parts[:4], "*"]))
            weekdays = " or ".join(_WEEKDAYS[day] for day in sorted(self._both_days[1]))
            words = f"{words}, if it is a {weekdays}"
        else:
            words = engine.explain(self.expression)
        return f"{words[:1].lower()}{words[1:]} ({self.zone().key})"

    def __repr__(self) -> str:
        given = [f"{name}={getattr(self, name)!r}" for name in
                 ("minute", "hour", "day_of_week", "day_of_month", "month_of_year")
                 if getattr(self, name) != "*"]
        if self.tz is not None:
            given.append(f"tz={self.tz!r}")
        return f"crontab({', '.join(given)})"


def _meaning(read: dict[str, Field], zone: str | None) -> tuple[object, ...]:
    """What equality compares: the values each field matches, and the zone."""
    return (*(read[name].values for name in CRON_ORDER), zone)
