"""Crontab arithmetic against an independent reference: a simulated clock on the wall.

The reference knows nothing of cron libraries or of ``django_tasks.schedules``: it moves
real time (UTC) on one minute at a time, reads the zone's wall clock with ``zoneinfo``, and
fires a wall-clock time the first time the clock reaches or passes it, which is the stated
policy (a repeated time fires once, at its first occurrence; a skipped time fires once, at
the end of the gap). Each crontab's matches are written out here by hand as sets.

To keep the suite fast, the clock runs around every daylight-saving transition of 2024 and
2025 in each zone, and through a few sampled days (month ends, a leap day, New Year).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from django_tasks.schedules import crontab

UTC = dt.UTC
MINUTE = dt.timedelta(minutes=1)
HOUR = dt.timedelta(hours=1)
ZONES = ("Europe/Prague", "America/New_York", "Australia/Lord_Howe")
YEARS = (2024, 2025)
#: How far before a window the reference clock starts, so it remembers a first pass.
WARM_UP = 3 * HOUR

Wall = tuple[int, int, int, int, int]  # minute, hour, day, month, weekday (Sunday = 0)


@dataclass(frozen=True)
class Matches:
    """What a crontab matches, written out by hand: the reference's own cron."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    either_day: bool  # cron's OR of day of month and day of week (not what crontab does)
    kwargs: dict[str, Any] = field(compare=False, hash=False)

    def __call__(self, wall: Wall) -> bool:
        minute, hour, day, month, weekday = wall
        if minute not in self.minutes or hour not in self.hours or month not in self.months:
            return False
        if self.either_day:
            return day in self.days or weekday in self.weekdays
        return day in self.days and weekday in self.weekdays


def case(crontab_kwargs: dict[str, Any], *, minutes: Iterable[int] = range(60),
         hours: Iterable[int] = range(24), days: Iterable[int] = range(1, 32),
         months: Iterable[int] = range(1, 13), weekdays: Iterable[int] = range(7),
         either_day: bool = False) -> Any:
    """A crontab's arguments, and by its side what it matches, written out by hand."""
    matches = Matches(frozenset(minutes), frozenset(hours), frozenset(days), frozenset(months),
                      frozenset(weekdays), either_day, crontab_kwargs)
    return pytest.param(matches, id=" ".join(f"{k}={v}" for k, v in crontab_kwargs.items()))


CASES = [
    case({"minute": "*/15"}, minutes={0, 15, 30, 45}),
    case({"minute": 30, "hour": 2}, minutes={30}, hours={2}),
    case({"minute": 15, "hour": 2}, minutes={15}, hours={2}),
    case({"minute": 45, "hour": 1}, minutes={45}, hours={1}),
    case({"minute": "*", "hour": 2}, hours={2}),
    case({"minute": "0,30", "hour": "1-3"}, minutes={0, 30}, hours={1, 2, 3}),
    case({"minute": 0, "hour": "*/3", "day_of_week": "sun"},
         minutes={0}, hours=range(0, 24, 3), weekdays={0}),
    case({"minute": 5, "hour": 2, "day_of_month": "1,15", "day_of_week": "sun"},
         minutes={5}, hours={2}, days={1, 15}, weekdays={0}),
    case({"minute": 0, "hour": 12, "day_of_month": "*/2", "day_of_week": "mon"},
         minutes={0}, hours={12}, days=range(1, 32, 2), weekdays={1}),
    case({"minute": 59, "hour": 23, "day_of_month": 31}, minutes={59}, hours={23}, days={31}),
    case({"minute": 0, "hour": 0, "day_of_month": 29, "month_of_year": "feb"},
         minutes={0}, hours={0}, days={29}, months={2}),
]


def transitions(zone: ZoneInfo, year: int) -> list[dt.datetime]:
    """The instants (to the minute) at which ``zone``'s offset changes during ``year``."""
    found = []
    hour = dt.datetime(year, 1, 1, tzinfo=UTC)
    while hour.year == year:
        if hour.astimezone(zone).utcoffset() != (hour + HOUR).astimezone(zone).utcoffset():
            minute = hour
            while minute.astimezone(zone).utcoffset() == hour.astimezone(zone).utcoffset():
                minute += MINUTE
            found.append(minute)
        hour += HOUR
    return found


def windows(zone_name: str) -> list[tuple[dt.datetime, dt.datetime]]:
    """Where the clock runs: around each transition, inside each repeated hour, and on
    sampled days."""
    zone = ZoneInfo(zone_name)
    found: list[tuple[dt.datetime, dt.datetime]] = []
    for year in YEARS:
        for change in transitions(zone, year):
            found.append((change - 30 * HOUR, change + 30 * HOUR))
            # Start inside the second pass of a repeated hour (or just after a gap).
            found += [(change + k * MINUTE, change + 3 * HOUR) for k in (1, 7, 29)]
        for month, day in ((2, 27), (4, 29), (8, 30), (12, 30)):
            start = dt.datetime(year, month, day, tzinfo=UTC)
            found.append((start, start + 60 * HOUR))
    return found


@functools.cache
def clock_walk(zone_name: str, start: dt.datetime, end: dt.datetime,
               ) -> list[tuple[dt.datetime, list[Wall]]]:
    """For each minute of real time in ``(start, end]``: the wall times it reaches.

    Usually one; after a gap, all those the gap swallowed; in a repeated hour, none (the
    clock shows times it has shown before).
    """
    zone = ZoneInfo(zone_name)
    high = start.astimezone(zone).replace(tzinfo=None)
    steps, now = [], start
    while now < end:
        now += MINUTE
        wall = now.astimezone(zone).replace(tzinfo=None)
        reached = []
        while high < wall:
            high += MINUTE
            reached.append((high.minute, high.hour, high.day, high.month,
                            high.isoweekday() % 7))
        steps.append((now, reached))
    return steps


def reference(matches: Matches, zone_name: str, start: dt.datetime,
              end: dt.datetime) -> list[dt.datetime]:
    walk = clock_walk(zone_name, start - WARM_UP, end)
    return [now for now, reached in walk
            if now > start and any(matches(wall) for wall in reached)]


@pytest.mark.parametrize("zone_name", ZONES)
@pytest.mark.parametrize("matches", CASES)
def test_crontab_fires_when_the_simulated_clock_says(matches: Matches, zone_name: str) -> None:
    schedule = crontab(**matches.kwargs, tz=zone_name)
    checked = 0
    for start, end in windows(zone_name):
        expected = reference(matches, zone_name, start, end)
        assert list(schedule.slots_between(start, end)) == expected, (start, end)
        checked += len(expected)
    assert checked or matches.months == {2}  # Feb 29 falls outside the windows but once


# -- the policy, case by case, as the module docstring states it ---------------------------

PRAGUE = ZoneInfo("Europe/Prague")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")


def local(zone: ZoneInfo, year: int, month: int, day: int, hour: int, minute: int,
          fold: int = 0) -> dt.datetime:
    """A wall-clock time as an instant in UTC: Python never finds an ambiguous local time
    equal to a time in another zone (PEP 495), so compare instants."""
    return dt.datetime(year, month, day, hour, minute, tzinfo=zone, fold=fold).astimezone(UTC)


def test_a_time_in_the_spring_gap_fires_once_when_the_gap_ends() -> None:
    at_0230 = crontab(minute=30, hour=2, tz="Europe/Prague")
    due = at_0230.next_after(local(PRAGUE, 2025, 3, 30, 1, 0))
    assert due == local(PRAGUE, 2025, 3, 30, 3, 0)     # 03:00 CEST, the end of the gap
    assert due.astimezone(PRAGUE).utcoffset() == 2 * HOUR
    assert at_0230.next_after(due) == local(PRAGUE, 2025, 3, 31, 2, 30)


def test_a_half_hour_gap_ends_on_the_half_hour() -> None:
    at_0215 = crontab(minute=15, hour=2, tz="Australia/Lord_Howe")
    due = at_0215.next_after(local(LORD_HOWE, 2025, 10, 5, 1, 0))
    assert due == local(LORD_HOWE, 2025, 10, 5, 2, 30)  # +11:00: 02:00-02:30 never happens
    assert due.astimezone(LORD_HOWE).utcoffset() == dt.timedelta(hours=11)


def test_every_time_a_gap_swallows_fires_together_once() -> None:
    quarter = crontab(minute="*/15", tz="Europe/Prague")
    slots = list(quarter.slots_between(local(PRAGUE, 2025, 3, 30, 1, 30),
                                       local(PRAGUE, 2025, 3, 30, 3, 30)))
    assert [s.astimezone(PRAGUE).strftime("%H:%M%z") for s in slots] == [
        "01:45+0100", "03:00+0200", "03:15+0200", "03:30+0200"]


def test_a_repeated_time_fires_once_at_its_first_occurrence() -> None:
    at_0230 = crontab(minute=30, hour=2, tz="Europe/Prague")
    first = at_0230.next_after(local(PRAGUE, 2025, 10, 26, 1, 0))
    assert first == local(PRAGUE, 2025, 10, 26, 2, 30, fold=0)   # 02:30 CEST
    assert first.astimezone(PRAGUE).utcoffset() == 2 * HOUR
    assert at_0230.next_after(first) == local(PRAGUE, 2025, 10, 27, 2, 30)
    # From inside the second pass (02:10 CET), 02:30 CET is not due again.
    second_pass = local(PRAGUE, 2025, 10, 26, 2, 10, fold=1)
    assert at_0230.next_after(second_pass) == local(PRAGUE, 2025, 10, 27, 2, 30)


def test_a_frequent_crontab_does_not_repeat_the_repeated_hour() -> None:
    quarter = crontab(minute="*/15", tz="Europe/Prague")
    slots = list(quarter.slots_between(local(PRAGUE, 2025, 10, 26, 1, 50),
                                       local(PRAGUE, 2025, 10, 26, 3, 20)))
    assert [s.astimezone(PRAGUE).strftime("%H:%M%z") for s in slots] == [
        "02:00+0200", "02:15+0200", "02:30+0200", "02:45+0200", "03:00+0100", "03:15+0100"]
    second_pass = local(PRAGUE, 2025, 10, 26, 2, 20, fold=1)
    assert quarter.next_after(second_pass) == local(PRAGUE, 2025, 10, 26, 3, 0)


def test_next_after_is_strictly_later_from_any_second_of_a_transition_day() -> None:
    quarter = crontab(minute="*/15", hour="0-4", tz="Australia/Lord_Howe")
    moment = dt.datetime(2025, 4, 5, 13, 0, 0, 500000, tzinfo=UTC)  # ~00:00 local, fall back
    for _ in range(4 * 3600 // 37):
        due = quarter.next_after(moment)
        assert moment < due <= moment + 45 * MINUTE
        moment += dt.timedelta(seconds=37)
