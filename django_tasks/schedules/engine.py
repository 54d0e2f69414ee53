"""The cron library behind crontab, behind three functions: the only module importing it.

cronsim (https://github.com/cuu508/cronsim) is given naive wall-clock datetimes only, so it
does calendar arithmetic and nothing else; the daylight-saving policy is ours (``zones``).
It receives expressions that ``cronspec`` rendered: plain numbers, ranges and ``*`` steps,
every field already checked.
"""

from __future__ import annotations

import datetime as dt

from cronsim import CronSim, CronSimError

from .base import ScheduleError

_ANY_START = dt.datetime(2000, 1, 1)


def check(expression: str) -> None:
    """Make the library parse ``expression``; our own checks should have caught any fault."""
    try:
        CronSim(expression, _ANY_START)
    except CronSimError as exc:
        raise ScheduleError(f"cron expression {expression!r}: {exc}") from None


def next_wall_time(expression: str, after: dt.datetime) -> dt.datetime:
    """The first naive wall-clock time strictly after the naive ``after`` that matches.

    cronsim drops microseconds, then steps one second on before it searches, so the result
    is strictly later (every match falls on a whole minute).
    """
    try:
        return next(CronSim(expression, after))
    except StopIteration:  # no match in 50 years: cronspec refuses the impossible dates
        raise ScheduleError(f"cron expression {expression!r} never matches") from None


def explain(expression: str) -> str:
    """``expression`` in English (cronsim's ``explain()``), e.g. ``At 07:30 on Monday``."""
    return CronSim(expression, _ANY_START).explain()
