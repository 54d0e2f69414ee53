"""``schedule`` (every so often, counted from the last run) and ``clocked`` (once)."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import ClassVar, Literal, TypedDict, get_args

from .base import BaseSchedule, ScheduleError, aware_utc

Period = Literal["days", "hours", "minutes", "seconds", "microseconds"]
#: IntervalSchedule's periods, largest first; ``as_fields`` picks the largest that fits.
PERIODS: tuple[Period, ...] = get_args(Period)
_UNITS = (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1))


class IntervalFields(TypedDict):
    """The columns of an IntervalSchedule row: ``every`` ``period``s."""

    every: int
    period: Period


class ClockedFields(TypedDict):
    """The column of a ClockedSchedule row."""

    clocked_time: dt.datetime


@dataclass(frozen=True, init=False)
class schedule(BaseSchedule):  # lower case: Celery's name
    """Due every ``run_every`` (seconds, or a timedelta) after the last run."""

    kind: ClassVar[str] = "interval"

    run_every: dt.timedelta

    def __init__(self, run_every: float | dt.timedelta) -> None:
        object.__setattr__(self, "run_every", _interval(run_every))

    @classmethod
    def from_fields(cls, every: int, period: str) -> schedule:
        """From an IntervalSchedule row: ``every=15, period="minutes"``."""
        if period not in PERIODS:
            raise ScheduleError(
                f"schedule period={period!r}: must be one of {', '.join(PERIODS)}"
            )
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ScheduleError(f"schedule every={every!r}: must be a whole number, 1 or more")
        try:
            return cls(dt.timedelta(**{period: every}))
        except OverflowError:
            raise ScheduleError(f"schedule every={every!r} {period}: too long") from None

    def as_fields(self) -> IntervalFields:
        """``every`` in the largest period that holds it exactly (90 s stays seconds)."""
        micro = self.run_every // dt.timedelta(microseconds=1)
        for period in PERIODS:
            size = dt.timedelta(**{period: 1}) // dt.timedelta(microseconds=1)
            if micro % size == 0:
                return IntervalFields(every=micro // size, period=period)
        raise AssertionError("unreachable: every interval is whole microseconds")

    def next_after(self, moment: dt.datetime) -> dt.datetime:
        """``moment + run_every``: the interval counts from the last run, not a grid."""
        return aware_utc(moment, "next_after() moment") + self.run_every

    def describe(self) -> str:
        """``"every 30 seconds"``, ``"every minute"``, ``"every 90 seconds"``."""
        for unit, size in _UNITS:
            count, rest = divmod(self.run_every, dt.timedelta(seconds=size))
            if not rest:
                return f"every {unit}" if count == 1 else f"every {count} {unit}s"
        return f"every {self.run_every.total_seconds():g} seconds"

    def __repr__(self) -> str:
        seconds = self.run_every.total_seconds()
        if dt.timedelta(seconds=seconds) == self.run_every:
            return f"schedule(run_every={seconds:.15g})"
        return f"schedule(run_every={self.run_every!r})"


def _interval(value: object) -> dt.timedelta:
    if isinstance(value, dt.timedelta):
        interval = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ScheduleError(f"schedule run_every={value!r}: must be a finite number")
        try:
            interval = dt.timedelta(seconds=value)
        except OverflowError:
            raise ScheduleError(f"schedule run_every={value!r}: too long") from None
    else:
        raise ScheduleError(
            f"schedule run_every={value!r}: expected a number of seconds or a timedelta, "
            f"not {type(value).__name__}"
        )
    if interval <= dt.timedelta(0):
        raise ScheduleError(f"schedule run_every={value!r}: must be more than zero")
    return interval


@dataclass(frozen=True, init=False)
class clocked(BaseSchedule):  # lower case: django-celery-beat's name
    """Due once, at the aware datetime ``at`` (kept in UTC)."""

    kind: ClassVar[str] = "clocked"

    at: dt.datetime

    def __init__(self, at: dt.datetime) -> None:
        object.__setattr__(self, "at", aware_utc(at, "clocked at"))

    @classmethod
    def from_fields(cls, clocked_time: dt.datetime) -> clocked:
        """From a ClockedSchedule row."""
        return cls(clocked_time)

    def as_fields(self) -> ClockedFields:
        return ClockedFields(clocked_time=self.at)

    def next_after(self, moment: dt.datetime) -> dt.datetime | None:
        """``at`` if it is still to come after ``moment``; None once it has passed."""
        return self.at if self.at > aware_utc(moment, "next_after() moment") else None

    def describe(self) -> str:
        return f"once, at {self.at:%Y-%m-%d %H:%M:%S} UTC"

    def __repr__(self) -> str:
        return f"clocked(at={self.at!r})"
