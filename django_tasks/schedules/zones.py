"""Time zones of crontabs, and the daylight-saving policy that turns wall-clock times into
instants.

The policy (stated in the package docstring): a wall-clock time that occurs twice fires
once, at its first occurrence; one that does not occur fires once, at the end of the gap.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .base import ScheduleError


def zone_key(value: object, what: str) -> str | None:
    """The IANA name of ``value`` (a name, a ZoneInfo or UTC), checked; None stays None."""
    if value is None:
        return None
    if value is dt.UTC:
        return "UTC"
    if isinstance(value, ZoneInfo):
        if value.key is None:  # built from a file: nothing to store in a database row
            raise ScheduleError(f"{what}={value!r}: a ZoneInfo read from a file has no name")
        return value.key
    if not isinstance(value, str):
        raise ScheduleError(
            f"{what}={value!r}: expected a time zone name such as 'Europe/Prague' or a ZoneInfo"
        )
    load_zone(value, what)
    return value


def load_zone(name: str, what: str) -> ZoneInfo:
    """``ZoneInfo(name)``, with an error that names the zone and the argument."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # ValueError: a malformed key ('../x', ''); OSError: a directory such as 'Europe'.
        raise ScheduleError(f"{what}={name!r}: unknown time zone {name!r}") from None


def default_zone() -> ZoneInfo:
    """Django's ``TIME_ZONE``, read now (so ``override_settings`` works); UTC without settings.

    Imported here, not at the top: a settings module may import this package before Django
    has settings to read.
    """
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    try:
        name = settings.TIME_ZONE
    except ImproperlyConfigured:  # no DJANGO_SETTINGS_MODULE and no settings.configure()
        return ZoneInfo("UTC")
    return load_zone(name, "settings.TIME_ZONE") if name else ZoneInfo("UTC")


def wall_to_instant(wall: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    """The instant (UTC) at which the naive wall-clock time ``wall`` in ``zone`` fires.

    ``fold=0`` is the earlier of two occurrences; when the round trip does not give ``wall``
    back, ``wall`` lies in a gap and fires when the gap ends.
    """
    local = wall.replace(tzinfo=zone, fold=0)
    instant = local.astimezone(dt.UTC)
    if instant.astimezone(zone).replace(tzinfo=None) == wall:
        return instant
    return gap_end(wall, zone)


def gap_end(wall: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    """The first instant after the gap that swallows ``wall``: the transition itself.

    Read with the offsets from before and after the transition, ``wall`` names two instants
    that straddle it.
    """
    early, late = sorted(
        int(wall.replace(tzinfo=zone, fold=fold).timestamp()) for fold in (0, 1)
    )
    return _transition(early, late, zone)


def repeat_end(local: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    """For ``local`` in the second pass of a repeated hour (``fold=1``): the naive wall time
    at which the repetition ends, the time the clock was turned back from."""
    moment = int(local.timestamp())
    turned_back = moment - int(local.replace(fold=0).timestamp())  # seconds, e.g. 3600
    change = _transition(moment - turned_back, moment, zone)
    last_before = (change - dt.timedelta(seconds=1)).astimezone(zone).replace(tzinfo=None)
    return last_before + dt.timedelta(seconds=1)


def _transition(early: int, late: int, zone: ZoneInfo) -> dt.datetime:
    """The first second in ``(early, late]`` whose UTC offset differs from ``early``'s.

    zoneinfo does not expose its transitions, so bisect; tz database transitions fall on
    whole seconds.
    """
    before = _offset(early, zone)
    while late - early > 1:
        middle = (early + late) // 2
        if _offset(middle, zone) == before:
            early = middle
        else:
            late = middle
    return dt.datetime.fromtimestamp(late, dt.UTC)


def _offset(timestamp: int, zone: ZoneInfo) -> dt.timedelta | None:
    return dt.datetime.fromtimestamp(timestamp, zone).utcoffset()
