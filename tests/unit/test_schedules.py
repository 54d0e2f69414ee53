"""Schedules of beat: parsing, errors, words, equality, model fields, and the import rule.

The daylight-saving arithmetic of crontabs is checked against a simulated clock in
``test_schedules_dst.py``.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.test import override_settings

from django_tasks.exceptions import TaskError
from django_tasks.schedules import (
    BaseSchedule,
    ScheduleError,
    clocked,
    crontab,
    is_schedule,
    schedule,
    to_schedule,
)
from django_tasks.schedules.cronspec import read_field

ROOT = Path(__file__).resolve().parents[2]
UTC = dt.UTC


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0,
        microsecond: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, second, microsecond, tzinfo=UTC)


# -- crontab fields -----------------------------------------------------------------------

@pytest.mark.parametrize(("name", "value", "values", "text"), [
    ("minute", "*", set(range(60)), "*"),
    ("minute", "*/15", {0, 15, 30, 45}, "*/15"),
    ("minute", "1-5", {1, 2, 3, 4, 5}, "1-5"),
    ("minute", "1-10/2", {1, 3, 5, 7, 9}, "1-10/2"),
    ("minute", "1,15,30", {1, 15, 30}, "1,15,30"),
    ("minute", " 1 , 15 ", {1, 15}, "1,15"),
    ("minute", "1,13,30-45,50-59/2", {1, 13, *range(30, 46), *range(50, 60, 2)},
     "1,13,30-45,50-59/2"),
    ("minute", 30, {30}, "30"),
    ("minute", [30, 0, 30], {0, 30}, "0,30"),
    ("minute", range(0, 60, 20), {0, 20, 40}, "0,20,40"),
    ("minute", {5, 35}, {5, 35}, "5,35"),
    ("hour", "*/3", {0, 3, 6, 9, 12, 15, 18, 21}, "*/3"),
    ("hour", "22-2", {22, 23, 0, 1, 2}, "22-2"),          # wraps around, as in Celery
    ("hour", "22-4/2", {22, 0, 2, 4}, "22-4/2"),
    ("hour", 0, {0}, "0"),
    ("day_of_week", "mon-fri", {1, 2, 3, 4, 5}, "mon-fri"),
    ("day_of_week", "sun", {0}, "sun"),
    ("day_of_week", "Sunday", {0}, "sunday"),
    ("day_of_week", "7", {0}, "7"),                       # 7 is Sunday too, as in cron
    ("day_of_week", 7, {0}, "7"),
    ("day_of_week", "5-7", {5, 6, 0}, "5-7"),
    ("day_of_week", "fri-mon", {5, 6, 0, 1}, "fri-mon"),
    ("day_of_week", "sat,SUN", {6, 0}, "sat,sun"),
    ("day_of_week", "*/2", {0, 2, 4, 6}, "*/2"),
    ("day_of_week", "*", set(range(7)), "*"),
    ("day_of_month", "*", set(range(1, 32)), "*"),
    ("day_of_month", "1-7,15-21", {*range(1, 8), *range(15, 22)}, "1-7,15-21"),
    ("day_of_month", "*/10", {1, 11, 21, 31}, "*/10"),
    ("month_of_year", "jan", {1}, "jan"),
    ("month_of_year", "jan-mar", {1, 2, 3}, "jan-mar"),
    ("month_of_year", "December", {12}, "december"),
    ("month_of_year", "nov-feb", {11, 12, 1, 2}, "nov-feb"),
    ("month_of_year", "*/3", {1, 4, 7, 10}, "*/3"),
])
def test_every_field_syntax_reads_to_its_values(
        name: str, value: Any, values: set[int], text: str) -> None:
    field = read_field(name, value)
    assert field.values == values
    assert field.text == text


@pytest.mark.parametrize(("kwargs", "expression"), [
    ({}, "* * * * *"),
    ({"minute": 30, "hour": 7, "day_of_week": 1}, "30 7 * * 1"),
    ({"minute": "*/15", "day_of_week": "mon-fri"}, "*/15 * * * 1-5"),
    ({"hour": "22-2", "day_of_week": "fri-mon"}, "* 0-2,22-23 * * 0-1,5-6"),
    ({"month_of_year": "jan-mar", "day_of_month": "1,15"}, "* * 1,15 1-3 *"),
    ({"minute": [0, 1, 2, 30]}, "0-2,30 * * * *"),
])
def test_the_library_gets_plain_numbers(kwargs: dict[str, Any], expression: str) -> None:
    assert crontab(**kwargs).expression == expression


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"minute": "61"}, "crontab minute='61': 61 is not in 0-59"),
    ({"minute": 61}, "crontab minute=61: 61 is not in 0-59"),
    ({"minute": "0-60"}, "crontab minute='0-60': 60 is not in 0-59"),
    ({"hour": 24}, "crontab hour=24: 24 is not in 0-23"),
    ({"hour": -1}, "crontab hour=-1: -1 is not in 0-23"),
    ({"hour": [7, 25]}, "crontab hour=[7, 25]: 25 is not in 0-23"),
    ({"day_of_week": "funday"},
     "crontab day_of_week='funday': 'funday' is not a day of the week: use 0-6 "
     "(Sunday = 0; 7 is Sunday too) or sun, mon, tue, wed, thu, fri, sat"),
    ({"day_of_week": "jan"}, "crontab day_of_week='jan': 'jan' is not a day of the week"),
    ({"day_of_week": 8}, "crontab day_of_week=8: 8 is not in 0-7"),
    ({"day_of_month": "0"}, "crontab day_of_month='0': 0 is not in 1-31"),
    ({"day_of_month": 32}, "crontab day_of_month=32: 32 is not in 1-31"),
    ({"month_of_year": "13"}, "crontab month_of_year='13': 13 is not in 1-12"),
    ({"month_of_year": "smarch"},
     "crontab month_of_year='smarch': 'smarch' is not a month: use 1-12 or jan, feb, ..., dec"),
    ({"minute": "mon"}, "crontab minute='mon': 'mon' is not a number"),
    ({"minute": "*/0"}, "crontab minute='*/0': the step '0' must be a whole number of at least 1"),
    ({"hour": "*/x"}, "crontab hour='*/x': the step 'x' must be a whole number of at least 1"),
    ({"hour": "1-5/"}, "crontab hour='1-5/': the step '' must be a whole number of at least 1"),
    ({"minute": "5/15"},
     "crontab minute='5/15': in '5/15' a step needs '*' or a range before it, "
     "as in '*/15' or '5-59/15'"),
    ({"minute": ""}, "crontab minute='': the pattern is empty; use '*' for every value"),
    ({"minute": "1,,2"}, "crontab minute='1,,2': an item between commas is empty"),
    ({"minute": "1-2-3"}, "crontab minute='1-2-3': '1-2-3' is not a cron pattern: use *, "
                          "*/15, 1-5, 1-10/2, or a list such as 1,15,30"),
    ({"minute": "-5"}, "crontab minute='-5': '-5' is not a cron pattern"),
    ({"minute": "L"}, "crontab minute='L': 'l' is not a number"),
    ({"minute": []}, "crontab minute=[]: no values given; use '*' for every value"),
    ({"minute": True}, "crontab minute=True: expected a cron pattern string, an int or a "
                       "list of ints, not bool"),
    ({"minute": 1.5}, "crontab minute=1.5: expected a cron pattern string, an int or a list "
                      "of ints, not float"),
    ({"minute": ["5"]}, "crontab minute=['5']: '5' is not a whole number"),
    ({"day_of_month": 31, "month_of_year": 2},
     "crontab day_of_month='31': never matches, since no month in month_of_year='2' has "
     "more than 29 days"),
    ({"day_of_month": "30,31", "month_of_year": "feb", "day_of_week": "*/2"},
     "crontab day_of_month='30,31': never matches"),
    ({"tz": "Mars/Olympus_Mons"},
     "crontab tz='Mars/Olympus_Mons': unknown time zone 'Mars/Olympus_Mons'"),
    ({"tz": "Europe"}, "crontab tz='Europe': unknown time zone 'Europe'"),
    ({"tz": "../etc/passwd"}, "crontab tz='../etc/passwd': unknown time zone"),
    ({"tz": ""}, "crontab tz='': unknown time zone ''"),
    ({"tz": 2}, "crontab tz=2: expected a time zone name such as 'Europe/Prague' or a ZoneInfo"),
])
def test_each_error_names_its_field_and_what_is_wrong(
        kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        crontab(**kwargs)
    assert str(caught.value).startswith(message)


def test_a_schedule_error_is_a_value_error_and_a_task_error() -> None:
    assert issubclass(ScheduleError, ValueError)
    assert issubclass(ScheduleError, TaskError)


def test_days_that_never_come_are_refused_whatever_the_weekday() -> None:
    # Both day fields must match (Celery's rule): a weekday cannot make 31 February happen.
    with pytest.raises(ScheduleError, match="day_of_month='31': never matches"):
        crontab(minute=0, hour=0, day_of_month=31, month_of_year=2, day_of_week="mon")
    assert crontab(minute=0, hour=0, day_of_month=29, month_of_year=2)  # leap years


def test_a_cron_line_reads_into_the_same_crontab() -> None:
    line = crontab.from_expression("30 7 * * mon-fri", tz="Europe/Prague")
    assert line == crontab(minute=30, hour=7, day_of_week="1-5", tz="Europe/Prague")
    with pytest.raises(ScheduleError, match=r"expected 5 fields"):
        crontab.from_expression("30 7 * *")


# -- day_of_month and day_of_week: Celery's rule (both must match) ----------------------------

def days_between(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]


def test_both_day_fields_restricted_must_both_match_as_in_celery() -> None:
    friday_13th = crontab(minute=0, hour=0, day_of_month=13, day_of_week="fri", tz="UTC")
    got = [t.date() for t in friday_13th.slots_between(utc(2024, 12, 31), utc(2027, 1, 1))]
    expected = [d for d in days_between(dt.date(2025, 1, 1), dt.date(2027, 1, 1))
                if d.day == 13 and d.weekday() == 4]
    assert got == expected == [dt.date(2025, 6, 13), dt.date(2026, 2, 13),
                               dt.date(2026, 3, 13), dt.date(2026, 11, 13)]
    assert friday_13th.describe() == \
        "at 00:00 on the 13th day of every month, if it is a Friday (UTC)"


def test_a_starred_day_field_is_anded_with_the_other() -> None:
    odd_mondays = crontab(minute=0, hour=0, day_of_month="*/2", day_of_week="mon", tz="UTC")
    got = [t.date() for t in odd_mondays.slots_between(utc(2024, 12, 31), utc(2025, 6, 1))]
    expected = [d for d in days_between(dt.date(2025, 1, 1), dt.date(2025, 6, 1))
                if d.day % 2 == 1 and d.weekday() == 0]
    assert got == expected


# -- next_after ----------------------------------------------------------------------------

def test_crontab_next_is_strictly_after_and_in_utc() -> None:
    hourly = crontab(minute=0, tz="Asia/Kolkata")  # +05:30: on the half hour in UTC
    assert hourly.next_after(utc(2025, 6, 1, 12, 30)) == utc(2025, 6, 1, 13, 30)
    assert hourly.next_after(utc(2025, 6, 1, 12, 29, 59, 999999)) == utc(2025, 6, 1, 12, 30)
    moment = dt.datetime(2025, 6, 1, 18, 0, tzinfo=ZoneInfo("Asia/Kolkata"))
    due = hourly.next_after(moment)
    assert due == utc(2025, 6, 1, 13, 30)
    assert due.tzinfo is UTC


def test_crontab_reaches_a_leap_day() -> None:
    leap = crontab(minute=0, hour=12, day_of_month=29, month_of_year="feb", tz="UTC")
    assert leap.next_after(utc(2025, 3, 1)) == utc(2028, 2, 29, 12)


def test_crontab_without_a_zone_uses_time_zone_when_used() -> None:
    morning = crontab(minute=0, hour=7)
    with override_settings(TIME_ZONE="Europe/Prague"):
        assert morning.zone() == ZoneInfo("Europe/Prague")
        assert morning.next_after(utc(2025, 1, 1)) == utc(2025, 1, 1, 6)
        assert morning.describe() == "at 07:00 every day (Europe/Prague)"
    with override_settings(TIME_ZONE="America/New_York"):
        assert morning.next_after(utc(2025, 1, 1)) == utc(2025, 1, 1, 12)


def test_interval_counts_elapsed_time_from_the_last_run() -> None:
    every_30s = schedule(30)
    # 02:59:50 summer time, 10 s before Prague's clocks go back to 02:00.
    last = dt.datetime(2025, 10, 26, 2, 59, 50, tzinfo=ZoneInfo("Europe/Prague"))
    due = every_30s.next_after(last)
    assert due == utc(2025, 10, 26, 1, 0, 20)      # 02:00:20 winter time, not 03:00:20
    assert due.tzinfo is UTC


def test_clocked_fires_once() -> None:
    once = clocked(dt.datetime(2025, 6, 1, 11, 0, tzinfo=ZoneInfo("Europe/Prague")))
    assert once.at == utc(2025, 6, 1, 9)
    assert once.next_after(utc(2025, 6, 1, 8, 59)) == utc(2025, 6, 1, 9)
    assert once.next_after(utc(2025, 6, 1, 9)) is None
    assert list(once.slots_between(utc(2025, 1, 1), utc(2026, 1, 1))) == [utc(2025, 6, 1, 9)]


@pytest.mark.parametrize("kind", [schedule(60), crontab(), clocked(utc(2030, 1, 1))])
def test_a_naive_moment_is_refused(kind: BaseSchedule) -> None:
    with pytest.raises(ScheduleError, match=r"next_after\(\) moment must be an aware datetime"):
        kind.next_after(dt.datetime(2025, 1, 1))


def test_slots_between_lists_due_instants_in_the_range() -> None:
    quarter = crontab(minute="*/15", tz="UTC")
    assert list(quarter.slots_between(utc(2025, 1, 1, 9), utc(2025, 1, 1, 10))) == [
        utc(2025, 1, 1, 9, 15), utc(2025, 1, 1, 9, 30), utc(2025, 1, 1, 9, 45),
        utc(2025, 1, 1, 10)]


# -- intervals and one-offs ----------------------------------------------------------------

@pytest.mark.parametrize(("value", "message"), [
    (0, "schedule run_every=0: must be more than zero"),
    (-5, "schedule run_every=-5: must be more than zero"),
    (dt.timedelta(0), "schedule run_every=datetime.timedelta(0): must be more than zero"),
    (1e-7, "schedule run_every=1e-07: must be more than zero"),
    (float("nan"), "schedule run_every=nan: must be a finite number"),
    (float("inf"), "schedule run_every=inf: must be a finite number"),
    (1e20, "schedule run_every=1e+20: too long"),
    ("30", "schedule run_every='30': expected a number of seconds or a timedelta, not str"),
    (True, "schedule run_every=True: expected a number of seconds or a timedelta, not bool"),
])
def test_a_bad_interval_is_refused(value: Any, message: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        schedule(value)
    assert str(caught.value) == message


def test_a_naive_clocked_time_is_refused() -> None:
    with pytest.raises(ScheduleError, match=r"clocked at must be an aware datetime"):
        clocked(dt.datetime(2030, 1, 1))


# -- describe ------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "words"), [
    (schedule(30), "every 30 seconds"),
    (schedule(1), "every second"),
    (schedule(1.5), "every 1.5 seconds"),
    (schedule(60), "every minute"),
    (schedule(90), "every 90 seconds"),
    (schedule(dt.timedelta(minutes=15)), "every 15 minutes"),
    (schedule(3600), "every hour"),
    (schedule(dt.timedelta(hours=36)), "every 36 hours"),
    (schedule(dt.timedelta(days=1)), "every day"),
    (schedule(dt.timedelta(weeks=2)), "every 14 days"),
    (crontab(tz="UTC"), "every minute (UTC)"),
    (crontab(minute="*/15", tz="UTC"), "every 15 minutes (UTC)"),
    (crontab(minute=30, hour=7, day_of_week=1, tz="Europe/Prague"),
     "at 07:30 on Monday (Europe/Prague)"),
    (crontab(minute=30, hour=7, day_of_week="mon-fri", tz=ZoneInfo("America/New_York")),
     "at 07:30 on Monday through Friday (America/New_York)"),
    (crontab(minute=0, hour=9, day_of_month="1,15", tz="UTC"),
     "at 09:00 on the first and the 15th day of month (UTC)"),
    (crontab(minute=0, hour=0, day_of_month="*/2", day_of_week="mon", tz="UTC"),
     "at 00:00 on every second day of month if it's on Monday (UTC)"),
    (crontab(minute=0, hour=0, day_of_month=1, month_of_year="jan", tz="UTC"),
     "at 00:00 on January 1 (UTC)"),
    (crontab(minute="*/7", tz="UTC"), "every seventh minute of every hour (UTC)"),
    (clocked(utc(2030, 1, 2, 3, 4, 5)), "once, at 2030-01-02 03:04:05 UTC"),
])
def test_describe_says_it_in_words(value: BaseSchedule, words: str) -> None:
    assert value.describe() == words


# -- values: equality, hashing, repr -------------------------------------------------------

def test_crontabs_that_fire_alike_are_equal() -> None:
    weekdays = crontab(minute=0, hour=9, day_of_week="mon-fri", tz="Europe/Prague")
    assert weekdays == crontab(minute="0", hour="9", day_of_week="1-5", tz="Europe/Prague")
    assert weekdays == crontab(minute=[0], hour=9, day_of_week=[5, 4, 3, 2, 1],
                               tz=ZoneInfo("Europe/Prague"))
    assert hash(weekdays) == hash(crontab(minute=0, hour=9, day_of_week="1-5",
                                          tz="Europe/Prague"))
    assert crontab(day_of_week="sun") == crontab(day_of_week=7) == crontab(day_of_week="0")
    assert len({weekdays, crontab(minute=0, hour=9, day_of_week="1-5", tz="Europe/Prague")}) == 1


def test_crontabs_that_fire_differently_are_not_equal() -> None:
    assert crontab(hour=9, tz="Europe/Prague") != crontab(hour=9, tz="UTC")
    assert crontab(hour=9) != crontab(hour=9, tz="UTC")    # None: TIME_ZONE when used
    assert crontab(minute=0) != crontab(minute=1)
    # Both day fields must match, so 1-31 with Mondays is just Mondays.
    assert crontab(day_of_month="1-31", day_of_week="mon") == crontab(day_of_week="mon")
    assert crontab(day_of_month="1-7", day_of_week="mon") != crontab(day_of_week="mon")
    assert crontab() != schedule(60)


def test_schedules_are_equal_by_interval() -> None:
    assert schedule(60) == schedule(dt.timedelta(minutes=1)) == schedule(60.0)
    assert hash(schedule(60)) == hash(schedule(dt.timedelta(minutes=1)))
    assert schedule(60) != schedule(61)
    assert clocked(utc(2030, 1, 1)) == clocked(
        dt.datetime(2030, 1, 1, 1, tzinfo=ZoneInfo("Europe/Prague")))


@pytest.mark.parametrize(("value", "text"), [
    (crontab(), "crontab()"),
    (crontab(minute=30, hour=7, day_of_week="Mon-Fri", tz="Europe/Prague"),
     "crontab(minute='30', hour='7', day_of_week='mon-fri', tz='Europe/Prague')"),
    (crontab(day_of_month=[15, 1], month_of_year="jan"),
     "crontab(day_of_month='1,15', month_of_year='jan')"),
    (schedule(30), "schedule(run_every=30)"),
    (schedule(0.25), "schedule(run_every=0.25)"),
    (schedule(dt.timedelta(days=2)), "schedule(run_every=172800)"),
    (clocked(utc(2030, 1, 1)),
     "clocked(at=datetime.datetime(2030, 1, 1, 0, 0, tzinfo=datetime.timezone.utc))"),
])
def test_repr_is_short_and_can_be_evaluated(value: BaseSchedule, text: str) -> None:
    assert repr(value) == text
    assert eval(text, {"crontab": crontab, "schedule": schedule, "clocked": clocked,
                       "datetime": dt}) == value


@pytest.mark.parametrize("value", [
    crontab(minute="*/15", day_of_week="mon-fri", tz="Europe/Prague"),
    schedule(90), clocked(utc(2030, 1, 1)),
])
def test_schedules_are_frozen_and_survive_pickle_and_copy(value: BaseSchedule) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        value.kind = "other"  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(value)) == value
    assert copy.deepcopy(value) == value
    assert repr(pickle.loads(pickle.dumps(value))) == repr(value)


def test_replace_builds_a_checked_copy() -> None:
    morning = crontab(minute=30, hour=7, tz="Europe/Prague")
    assert dataclasses.replace(morning, hour="8") == crontab(minute=30, hour=8,
                                                              tz="Europe/Prague")
    with pytest.raises(ScheduleError, match=r"crontab hour='25': 25 is not in 0-23"):
        dataclasses.replace(morning, hour="25")
    assert dataclasses.replace(schedule(30), run_every=dt.timedelta(minutes=1)) == schedule(60)


# -- model fields --------------------------------------------------------------------------

@pytest.mark.parametrize("value", [
    crontab(),
    crontab(minute=30, hour=7, day_of_week="mon-fri", tz="Europe/Prague"),
    crontab(minute="*/15", hour="22-2", day_of_month="1-7,15-21", month_of_year="jan-mar"),
    crontab(minute=[0, 30], day_of_week=7, tz="Australia/Lord_Howe"),
    schedule(30), schedule(90), schedule(1.5), schedule(dt.timedelta(hours=2)),
    schedule(dt.timedelta(days=3)), clocked(utc(2030, 1, 1, 12)),
])
def test_fields_round_trip(value: BaseSchedule) -> None:
    fields = value.as_fields()
    again = type(value).from_fields(**fields)  # type: ignore[attr-defined]
    assert again == value
    assert again.as_fields() == fields
    assert repr(again) == repr(value)


def test_crontab_fields_are_the_text_given_and_a_blank_zone_means_time_zone() -> None:
    assert crontab(minute=30, hour=7, day_of_week="Mon-Fri").as_fields() == {
        "minute": "30", "hour": "7", "day_of_week": "mon-fri", "day_of_month": "*",
        "month_of_year": "*", "timezone": ""}
    assert crontab.from_fields(hour="7", timezone="").tz is None
    assert crontab.from_fields(hour="7", timezone=None).tz is None
    assert crontab.from_fields(hour="7", timezone=ZoneInfo("Asia/Tokyo")).tz == "Asia/Tokyo"


@pytest.mark.parametrize(("value", "fields"), [
    (schedule(90), {"every": 90, "period": "seconds"}),
    (schedule(120), {"every": 2, "period": "minutes"}),
    (schedule(dt.timedelta(hours=2)), {"every": 2, "period": "hours"}),
    (schedule(dt.timedelta(weeks=1)), {"every": 7, "period": "days"}),
    (schedule(1.5), {"every": 1500000, "period": "microseconds"}),
    (clocked(utc(2030, 1, 1)), {"clocked_time": utc(2030, 1, 1)}),
])
def test_interval_fields_use_the_largest_period_that_fits(
        value: BaseSchedule, fields: dict[str, Any]) -> None:
    assert value.as_fields() == fields


@pytest.mark.parametrize(("fields", "message"), [
    ({"every": 5, "period": "weeks"},
     "schedule period='weeks': must be one of days, hours, minutes, seconds, microseconds"),
    ({"every": 0, "period": "seconds"}, "schedule every=0: must be a whole number, 1 or more"),
    ({"every": "5", "period": "seconds"},
     "schedule every='5': must be a whole number, 1 or more"),
    ({"every": 10**12, "period": "days"}, "schedule every=1000000000000 days: too long"),
])
def test_bad_interval_fields_are_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        schedule.from_fields(**fields)
    assert str(caught.value) == message


# -- what a beat schedule entry accepts ----------------------------------------------------

@pytest.mark.parametrize(("value", "expected"), [
    (30, schedule(30)),
    (2.5, schedule(2.5)),
    (dt.timedelta(minutes=5), schedule(300)),
    (schedule(10), schedule(10)),
    (crontab(hour=7), crontab(hour=7)),
    (clocked(utc(2030, 1, 1)), clocked(utc(2030, 1, 1))),
])
def test_to_schedule_accepts_what_celery_beat_accepts(value: Any, expected: Any) -> None:
    assert to_schedule(value) == expected
    assert is_schedule(value)


@pytest.mark.parametrize("value", ["30", None, True, 0, -1, "*/5 * * * *", [30]])
def test_to_schedule_refuses_the_rest(value: Any) -> None:
    assert not is_schedule(value)
    with pytest.raises(ScheduleError):
        to_schedule(value)


# -- importable before Django is set up ----------------------------------------------------

def run_python(code: str, tmp_path: Path, **env: str) -> Any:
    environ = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    environ.update(env, PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]))
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=environ,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_importing_schedules_reads_no_settings(tmp_path: Path) -> None:
    """As a settings module would: no DJANGO_SETTINGS_MODULE, nothing configured."""
    seen = run_python("""
        import datetime as dt, json, sys
        from django_tasks.schedules import crontab, schedule
        prague = crontab(hour=2, minute=30, tz="Europe/Prague")
        due = prague.next_after(dt.datetime(2025, 3, 30, tzinfo=dt.UTC))
        before = sorted(m for m in sys.modules if m.startswith("django."))
        plain = crontab(minute=0, hour=7)
        print(json.dumps({"before": before, "due": due.isoformat(),
                          "every": schedule(30).describe(), "zone": plain.zone().key,
                          "words": plain.describe()}))
    """, tmp_path)
    assert "django.conf" not in seen["before"]
    assert seen["due"] == "2025-03-30T01:00:00+00:00"
    assert seen["every"] == "every 30 seconds"
    assert seen["zone"] == "UTC"                      # no settings at all: UTC
    assert seen["words"] == "at 07:00 every day (UTC)"


def test_a_settings_module_can_build_schedules_that_read_its_time_zone(tmp_path: Path) -> None:
    (tmp_path / "beat_settings.py").write_text(textwrap.dedent("""
        from django_tasks.schedules import crontab, schedule
        TIME_ZONE = "Australia/Lord_Howe"
        USE_TZ = True
        TASKS_BEAT_SCHEDULE = {
            "report": {"task": "app.report", "schedule": crontab(hour=7, minute=30)},
            "poll": {"task": "app.poll", "schedule": schedule(30)},
        }
    """))
    seen = run_python("""
        import json
        from django.conf import settings
        report = settings.TASKS_BEAT_SCHEDULE["report"]["schedule"]
        print(json.dumps({"zone": report.zone().key, "words": report.describe()}))
    """, tmp_path, DJANGO_SETTINGS_MODULE="beat_settings")
    assert seen == {"zone": "Australia/Lord_Howe",
                    "words": "at 07:30 every day (Australia/Lord_Howe)"}
