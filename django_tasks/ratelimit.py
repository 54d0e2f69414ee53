"""Rate limits: ``rate_limit="10/s"``, ``"100/m"``, ``"1000/h"``, read as Celery reads them.

A rate is a number of tasks per second (``s``, the default unit), minute (``m``) or hour
(``h``); ``0`` means no limit, as in Celery (a task that opts out of
``TASKS_DEFAULT_RATE_LIMIT``). The limit is the cluster's, not each worker's: every worker
takes a slot from one shared bucket per task (``brokers/buckets.py``), and the worker's
``RateLimit`` hook (``worker/ratelimit.py``) defers a message until its slot.
"""

from __future__ import annotations

import functools
import hashlib
import math
from typing import Any

from .conf import task_settings

UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
#: The headers a deferred message carries: the Unix time of the slot it holds, and the
#: interval of the rate it was taken at (a slot of another rate does not count).
SLOT_HEADER = "rate_limit_slot"
INTERVAL_HEADER = "rate_limit_interval"
#: The longest bucket name (the ``RateBucket.name`` column).
MAX_BUCKET_NAME = 255


class RateError(ValueError):
    """A rate limit that cannot be read: write it as ``"10/s"``, ``"100/m"`` or
    ``"1000/h"`` (a positive number per second, minute or hour), ``0`` or None for none."""


@functools.lru_cache(maxsize=256)
def _parse(text: str) -> float | None:
    number, _, unit = text.strip().partition("/")
    unit = unit.strip() or "s"
    if unit not in UNITS:
        raise RateError(f"rate limit {text!r}: the unit after '/' must be s, m or h, not "
                        f"{unit!r} (e.g. '10/s', '100/m', '1000/h').")
    try:
        count = float(number)
    except ValueError:
        raise RateError(f"rate limit {text!r}: {number.strip()!r} is not a number of tasks "
                        "(e.g. '10/s', '100/m', '1000/h').") from None
    if not math.isfinite(count) or count < 0:
        raise RateError(f"rate limit {text!r}: the number of tasks must be 0 or more (0 "
                        "means no limit).")
    return count / UNITS[unit] if count else None


def parse_rate(value: Any) -> float | None:
    """Tasks per second for ``value`` (``"10/s"``, ``"100/m"``, ``"1000/h"``, a number per
    second); None for no limit (None, 0). Raises :class:`RateError` for anything else."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise RateError(f"rate limit {value!r}: give a string such as '10/s', '100/m' or "
                        "'1000/h', or None.")
    return _parse(str(value))


def rate_error(value: Any) -> str:
    """Why ``value`` is not a rate limit; '' when it is one."""
    try:
        parse_rate(value)
    except RateError as exc:
        return str(exc)
    return ""


def bucket_name(task_name: str, interval: float) -> str:
    """The shared bucket of ``task_name`` at one rate: a changed rate gets a bucket of its
    own, free at once, rather than the slots the old rate had handed out ahead."""
    suffix = f"@{interval:.9g}"
    if len(task_name) + len(suffix) > MAX_BUCKET_NAME:
        digest = hashlib.sha256(task_name.encode()).hexdigest()[:16]
        task_name = f"{task_name[:MAX_BUCKET_NAME - len(suffix) - 17]}~{digest}"
    return task_name + suffix


def rate_of(task: Any) -> float | None:
    """The rate a task runs at, in tasks per second: its own ``rate_limit``, else
    ``TASKS_DEFAULT_RATE_LIMIT``; None for no limit. Read on every run, so that a changed
    rate takes effect at once."""
    own = getattr(task, "rate_limit", None)
    return parse_rate(own if own is not None else task_settings.DEFAULT_RATE_LIMIT)
