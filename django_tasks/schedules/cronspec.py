"""Crontab fields: Celery's syntax read, checked and rendered for the cron library.

A field is an int (``7``), an iterable of ints (``[0, 30]``) or a pattern string: items
separated by commas, each ``*``, ``*/step``, ``n``, ``a-b`` or ``a-b/step``; day and month
names (``mon``, ``monday``, ``jan``) where they make sense. A range whose end comes before
its start wraps around (``fri-mon``, ``hour='22-2'``), as in Celery. Each error names the
field, the value given and what is wrong with it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .base import ScheduleError

WEEKDAYS = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august",
          "september", "october", "november", "december")
#: The most days each month can have (February: 29 in a leap year).
DAYS_IN_MONTH = {1: 31, 2: 29, 3: 31, 4: 30, 5: 31, 6: 30,
                 7: 31, 8: 31, 9: 30, 10: 31, 11: 30, 12: 31}

_ITEM = re.compile(
    r"(?:(?P<star>\*)|(?P<start>[a-z0-9]+)(?:-(?P<end>[a-z0-9]+))?)(?:/(?P<step>[^/]*))?"
)
_SYNTAX = "use *, */15, 1-5, 1-10/2, or a list such as 1,15,30"


@dataclass(frozen=True)
class Spec:
    """What one crontab field may hold: its name, range and the names of its values."""

    field: str
    low: int
    high: int
    names: tuple[str, ...] = ()  # names[i] is value low + i
    #: Day of week only: 7 is also accepted and means Sunday (0), as in cron.
    sunday_seven: bool = False

    def number(self, token: str) -> int:
        """The value of one token: digits, or a name (full or its first three letters)."""
        if token.isdigit():
            return self.check(int(token))
        for index, name in enumerate(self.names):
            if token in (name, name[:3]):
                return self.low + index
        raise ValueError(self.unknown(token))

    def check(self, value: int) -> int:
        top = 7 if self.sunday_seven else self.high
        if not self.low <= value <= top:
            raise ValueError(f"{value} is not in {self.low}-{top}")
        return value

    def unknown(self, token: str) -> str:
        if self.field == "day_of_week":
            return (f"{token!r} is not a day of the week: use 0-6 (Sunday = 0; 7 is Sunday "
                    "too) or sun, mon, tue, wed, thu, fri, sat")
        if self.field == "month_of_year":
            return f"{token!r} is not a month: use 1-12 or jan, feb, ..., dec"
        return f"{token!r} is not a number"

    def everything(self) -> list[int]:
        return list(range(self.low, self.high + 1))


SPECS = {
    "minute": Spec("minute", 0, 59),
    "hour": Spec("hour", 0, 23),
    "day_of_week": Spec("day_of_week", 0, 6, WEEKDAYS, sunday_seven=True),
    "day_of_month": Spec("day_of_month", 1, 31),
    "month_of_year": Spec("month_of_year", 1, 12, MONTHS),
}


@dataclass(frozen=True)
class Field:
    """One crontab field, read: its text, its values and its rendering for the library."""

    text: str  # what is stored and shown: the pattern as given, normalised
    values: frozenset[int]
    #: Written as ``*`` or ``*/n`` first: cron then ANDs day_of_month with day_of_week.
    starred: bool
    cron: str  # numbers only, same meaning, for cronsim


def read_field(name: str, value: object) -> Field:
    """Read crontab field ``name``; a ScheduleError says ``crontab name=value: why``."""
    spec = SPECS[name]
    try:
        if isinstance(value, str):
            return _read_pattern(spec, value)
        return _read_numbers(spec, value)
    except ValueError as exc:
        raise ScheduleError(f"crontab {name}={value!r}: {exc}") from None


def _read_pattern(spec: Spec, value: str) -> Field:
    items = [item.strip() for item in value.strip().lower().split(",")]
    if items == [""]:
        raise ValueError("the pattern is empty; use '*' for every value")
    if "" in items:
        raise ValueError("an item between commas is empty")
    rendered, values = [], set()
    for item in items:
        cron, numbers = _read_item(spec, item)
        rendered.append(cron)
        values.update(numbers)
    return Field(",".join(items), _sunday(spec, values), items[0].startswith("*"),
                 ",".join(rendered))


def _read_item(spec: Spec, item: str) -> tuple[str, list[int]]:
    """One comma-separated item: its rendering for cronsim, and the values it stands for."""
    match = _ITEM.fullmatch(item)
    if match is None:
        raise ValueError(f"{item!r} is not a cron pattern: {_SYNTAX}")
    start, end, step_text = match["start"], match["end"], match["step"]
    step = 1 if step_text is None else _step(step_text)
    if match["star"]:
        values = spec.everything()[::step]
        return ("*" if step == 1 else f"*/{step}"), values
    if end is None and step_text is not None:
        raise ValueError(f"in {item!r} a step needs '*' or a range before it, "
                         f"as in '*/{step}' or '{start}-{spec.high}/{step}'")
    first = spec.number(start)
    last = first if end is None else spec.number(end)
    if first <= last:
        values = list(range(first, last + 1))[::step]
        text = str(first) if end is None else f"{first}-{last}"
        return (text if step == 1 else f"{text}/{step}"), values
    # Celery's wrap-around (fri-mon); cron has no such range, so cronsim gets the values.
    top = 6 if spec.sunday_seven else spec.high
    values = [*range(first, top + 1), *range(spec.low, last + 1)][::step]
    return _compact(values), values


def _step(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"the step {text!r} must be a whole number of at least 1")
    return int(text)


def _read_numbers(spec: Spec, value: object) -> Field:
    """An int, or an iterable of ints (Celery accepts both); a string is read elsewhere."""
    if isinstance(value, int) and not isinstance(value, bool):
        numbers = [value]
    elif isinstance(value, Iterable) and not isinstance(value, bytes | dict):
        numbers = list(value)
        if not numbers:
            raise ValueError("no values given; use '*' for every value")
    else:
        raise ValueError(f"expected a cron pattern string, an int or a list of ints, "
                         f"not {type(value).__name__}")
    for number in numbers:
        if isinstance(number, bool) or not isinstance(number, int):
            raise ValueError(f"{number!r} is not a whole number")
        spec.check(number)
    ordered = sorted(set(numbers))
    return Field(",".join(map(str, ordered)), _sunday(spec, ordered), False, _compact(ordered))


def _sunday(spec: Spec, values: Iterable[int]) -> frozenset[int]:
    """Day of week 7 is Sunday, which is 0."""
    if spec.sunday_seven:
        return frozenset(0 if value == 7 else value for value in values)
    return frozenset(values)


def _compact(values: Iterable[int]) -> str:
    """Sorted values as cron text, runs folded into ranges: ``[0, 1, 2, 5]`` -> ``0-2,5``."""
    runs: list[list[int]] = []
    for value in sorted(set(values)):
        if runs and value == runs[-1][1] + 1:
            runs[-1][1] = value
        else:
            runs.append([value, value])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def check_days(day_of_month: Field, month_of_year: Field, day_of_week: Field) -> None:
    """Refuse day/month combinations that never occur (``day_of_month=31, month_of_year=2``).

    The day fields are ANDed (Celery's rule), and any day of a month falls on every weekday
    over the years, so the weekday cannot make a possible date impossible.
    """
    longest = max(DAYS_IN_MONTH[month] for month in month_of_year.values)
    if min(day_of_month.values) > longest:
        raise ScheduleError(
            f"crontab day_of_month={day_of_month.text!r}: never matches, since no month "
            f"in month_of_year={month_of_year.text!r} has more than {longest} days"
        )
