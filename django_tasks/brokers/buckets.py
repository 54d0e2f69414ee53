"""Shared rate-limit buckets: the slots of each rate-limited task, for the whole cluster.

A bucket is one number per task and rate (``ratelimit.bucket_name``: ``name@interval``, so
a changed rate starts afresh): ``free_at``, when its next slot is free. ``reserve`` takes
that slot atomically: the slot is ``max(free_at, now)``, and ``free_at`` moves one interval
(``1 / rate``) past it. Concurrent takers get distinct slots at least an interval apart, so
the tasks of all workers together start no faster than the rate, and a bucket allows no
burst (like Celery's, whose bucket holds one token). A message whose slot is in the future
waits in the broker until then (``worker/ratelimit.py``).

Each broker names the buckets that fit it (``Broker.rate_buckets()``): a row per task in the
database (the database broker, and AMQP, whose outbox lives there too), a Lua script on Redis,
a dictionary for the memory broker. The time is the client's (``clock.now()``), as for leases.
"""

from __future__ import annotations

import abc
import threading

from django.db import connections, transaction


class RateBuckets(abc.ABC):
    @abc.abstractmethod
    def reserve(self, key: str, interval: float, now: float) -> float:
        """Take the next free slot of bucket ``key`` (one slot every ``interval`` seconds)
        and return its time, Unix seconds, ``now`` or later."""

    @abc.abstractmethod
    def reset(self, key: str) -> None:
        """Forget the bucket (a changed rate starts afresh): its next slot is free now."""


class MemoryBuckets(RateBuckets):
    """In this process only (the memory broker, for tests)."""

    def __init__(self) -> None:
        self._free: dict[str, float] = {}
        self._lock = threading.Lock()

    def reserve(self, key: str, interval: float, now: float) -> float:
        with self._lock:
            slot = max(self._free.get(key, now), now)
            self._free[key] = slot + interval
            return slot

    def reset(self, key: str) -> None:
        with self._lock:
            self._free.pop(key, None)


class DatabaseBuckets(RateBuckets):
    """A ``RateBucket`` row per task, taken with one upsert: ``INSERT … ON CONFLICT DO
    UPDATE … RETURNING`` on PostgreSQL and SQLite (atomic on its own; PostgreSQL locks the
    row, SQLite has one writer at a time), ``ON DUPLICATE KEY UPDATE`` and a read of the
    locked row in one transaction on MySQL and MariaDB."""

    def __init__(self, alias: str) -> None:
        self.alias = alias

    def reserve(self, key: str, interval: float, now: float) -> float:
        from ..models import RateBucket

        connection = connections[self.alias]
        table = connection.ops.quote_name(RateBucket._meta.db_table)
        greatest = "MAX" if connection.vendor == "sqlite" else "GREATEST"
        if connection.vendor in ("postgresql", "sqlite"):
            sql = (f"INSERT INTO {table} (name, free_at) VALUES (%s, %s) ON CONFLICT (name) DO "
                   f"UPDATE SET free_at = {greatest}({table}.free_at, %s) + %s "
                   "RETURNING free_at")
            with connection.cursor() as cursor:
                cursor.execute(sql, [key, now + interval, now, interval])
                free_at = float(cursor.fetchone()[0])
            return free_at - interval
        with transaction.atomic(using=self.alias), connection.cursor() as cursor:
            cursor.execute(f"INSERT INTO {table} (name, free_at) VALUES (%s, %s) ON DUPLICATE "
                           f"KEY UPDATE free_at = GREATEST(free_at, %s) + %s",
                           [key, now + interval, now, interval])
            cursor.execute(f"SELECT free_at FROM {table} WHERE name = %s", [key])
            return float(cursor.fetchone()[0]) - interval

    def reset(self, key: str) -> None:
        from ..models import RateBucket

        RateBucket.objects.using(self.alias).filter(name=key).delete()
