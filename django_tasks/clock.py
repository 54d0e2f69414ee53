"""The one clock django_tasks reads for "now" (UTC, timezone-aware).

Everything that schedules or compares times (countdowns, etas, expiry, leases, retries,
result dates) calls ``clock.now()`` at the moment it needs it, so that a test can move time
by replacing this function (``django_tasks.testing.FakeClock``). Liveness (heartbeats,
stall detection) uses the monotonic clock and is not affected.
"""

from __future__ import annotations

import datetime as dt


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
