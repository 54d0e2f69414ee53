"""The database broker (``django://``, ``django://ALIAS``): queue rows through the ORM.

Enqueue is an INSERT on the caller's connection, so it is part of the caller's transaction.
A claim is one statement that moves due rows' ``visible_at`` to the end of a lease and gives
them a new ``lease_token``, which every later write for the delivery must name: on
PostgreSQL an ``UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED) RETURNING``, on SQLite
the same ``UPDATE … RETURNING`` (SQLite runs one writer at a time, so the statement is atomic),
and elsewhere (MySQL, MariaDB) a ``SELECT … FOR UPDATE SKIP LOCKED`` and an UPDATE in one
transaction.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from django.db import connections, transaction
from django.db.models import Case, F, Value, When

from .. import clock, durability, notify, prepared
from ..conf import database_alias
from ..message import MAX_PRIORITY, Message, bounded_priority, parse_time
from ..models import QueuedMessage
from . import filewatch
from .base import (
    WAKE_AHEAD_SECONDS,
    Broker,
    Capabilities,
    Delivery,
    Purged,
    QueueCounts,
    new_token,
)

_CHUNK = 500
#: The priorities a queue row holds (``bounded_priority``); the claim reads each as a range.
PRIORITIES = range(MAX_PRIORITY + 1)
_files = filewatch.FileWatch()
# One delivery fewer, never below zero (unsigned on MySQL: no subtraction from 0 at all).
_UNCOUNT = Case(When(deliveries__gt=0, then=F("deliveries") - 1), default=Value(0))


def _now() -> dt.datetime:
    return clock.now()


def _due_ids(vendor: str, table: str, queues: Sequence[str], now: Any,
             limit: int) -> tuple[str, list[Any]]:
    """The query of the ids a claim takes, and its parameters: up to ``limit`` due rows of
    ``queues``, higher priority first, then the earliest ``visible_at``, then publish order.

    Read in that order straight from the queue index (queue, priority, visible_at, id), a
    due row of one priority stands after the delayed and leased rows of every priority above
    it, and a claim that finds fewer due rows than it asks for (an idle look, the end of a
    queue) reads every delayed row of the queue: 9-13 ms a claim on PostgreSQL with 100,000
    countdown tasks waiting, where a due row is 0.1 ms away. So the due rows of each
    priority (0-``MAX_PRIORITY``: ``bounded_priority``) are read as one range of the index:
    for a worker of one queue, on PostgreSQL one ``LATERAL`` probe a priority, from the highest
    (each row locked as it is taken, so none beyond ``limit``), on SQLite a ``UNION ALL``
    of the ten. A worker of several queues lists the priorities (``priority IN (0, …,
    9)``), as MySQL and MariaDB claim (``_claim_locking``): SQLite and MariaDB read a range
    per queue and priority, PostgreSQL as its planner chooses by the table's statistics (a
    merge of the queues' ranges, each row locked as taken, drained 20,000 tasks at 30-80 %
    of this one's speed: locks taken through a join waited where a plain scan's did not)."""
    postgres = vendor == "postgresql"
    lock = " FOR UPDATE SKIP LOCKED" if postgres else ""
    if len(queues) != 1:
        marks = ", ".join(["%s"] * len(queues))
        return (f"SELECT id FROM {table} WHERE queue IN ({marks}) AND priority IN "
                f"({', '.join(map(str, PRIORITIES))}) AND visible_at <= %s "
                f"ORDER BY priority DESC, visible_at, id LIMIT %s{lock}",
                [*queues, now, limit])
    one = (f"SELECT id FROM {table} WHERE queue = %s AND priority = {{priority}} "
           f"AND visible_at <= %s ORDER BY visible_at, id LIMIT %s{lock}")
    if postgres:
        # The limit and the priorities written into the text, not given as values: prepared
        # (``prepared.py``), the claim then keeps one plan made without the values, which
        # needs them to read the queue index (given as values, the plan without them read
        # the whole table, and PostgreSQL planned the claim again at every run instead).
        one = one.replace("LIMIT %s", f"LIMIT {int(limit)}")
        return (f"SELECT c.id FROM generate_series({MAX_PRIORITY}, 0, -1) AS p(n) CROSS JOIN "
                f"LATERAL ({one.format(priority='p.n')}) AS c LIMIT {int(limit)}",
                [queues[0], now])
    arms = " UNION ALL ".join(f"SELECT id FROM ({one.format(priority=priority)})"
                              for priority in reversed(PRIORITIES))
    return f"{arms} LIMIT %s", [*[queues[0], now, limit] * len(PRIORITIES), limit]


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _wake(messages: Sequence[Message], now: dt.datetime) -> str | None:
    """The payload of a publish's wake-up: how many of ``messages`` are due at once; none
    due but one due within ``WAKE_AHEAD_SECONDS`` wakes one consumer (a count of 0), so
    that it asks when; None: no wake-up."""
    due = sum(m.eta is None or m.eta <= now for m in messages)
    if due:
        return notify.wake(due)
    soon = now + dt.timedelta(seconds=WAKE_AHEAD_SECONDS)
    return notify.wake(0) if any(m.eta is not None and m.eta <= soon for m in messages) \
        else None


def _by_token(deliveries: Iterable[Delivery]) -> list[tuple[int, list[Delivery]]]:
    """Deliveries grouped by lease token (one group per fetch they came from)."""
    groups: dict[int, list[Delivery]] = {}
    for delivery in deliveries:
        groups.setdefault(delivery.token, []).append(delivery)
    return list(groups.items())


class _Peek(threading.local):
    """What this thread's last fetch on MySQL or MariaDB learned (``_nothing_due``)."""

    idle = False  # it found nothing
    # the queues, the time of the read, and their earliest visible_at then (None: empty)
    seen: tuple[tuple[str, ...], dt.datetime, dt.datetime | None] | None = None


class DatabaseBroker(Broker):
    capabilities = Capabilities(transactional=True)

    def __init__(self, url: str = "django://") -> None:
        super().__init__(url)
        self.alias = database_alias(url)
        self.database_alias = self.alias
        self._claim_sql: str | None = None
        self._peek = _Peek()

    @property
    def _rows(self) -> Any:
        return QueuedMessage.objects.using(self.alias)

    def publish(self, messages: Sequence[Message]) -> None:
        now = _now()
        rows = [
            QueuedMessage(queue=m.queue, priority=bounded_priority(m), task_id=m.id,
                          body=m.encode(), visible_at=m.eta or now, created_at=now)
            for m in messages
        ]
        self._rows.bulk_create(rows, batch_size=_CHUNK)
        if wake := _wake(messages, now):
            notify.notify(connections[self.alias], notify.QUEUE_CHANNEL, wake)

    def publish_batch(self) -> int:
        """On PostgreSQL, any number: a batch is copied in (``publish_with_pending``)."""
        return 10_000 if connections[self.alias].vendor == "postgresql" else 1000

    def publish_with_pending(self, messages: Sequence[Message]) -> bool:
        """Write PENDING result rows and queue rows together, where that is possible.

        On PostgreSQL a few messages go in one statement, a data-modifying CTE that inserts
        both in one round trip, atomic by itself, instead of BEGIN, two INSERTs and COMMIT;
        a batch is copied in (``COPY``), both tables in one transaction. Returns False where
        the caller must write them separately.
        """
        connection = connections[self.alias]
        if connection.vendor != "postgresql" or not messages:
            return False
        from ..results import database as results

        if len(messages) >= results.COPY_FROM:
            self._copy_with_pending(connection, messages)
            return True

        now = _now()
        table = connection.ops.quote_name(QueuedMessage._meta.db_table)
        columns = "(queue, priority, task_id, body, visible_at, deliveries, runs, created_at)"
        if len(messages) == 1:  # a delay(): plain parameters, planned sooner (0.4 against
            # 0.46 ms a call from a client here, with the commit)
            [m] = messages
            insert_pending, params = results.pending_insert(connection, messages)
            insert_queued = f"INSERT INTO {table} {columns} VALUES (%s, %s, %s, %s, %s, 0, 0, %s)"
            params += [m.queue, bounded_priority(m), m.id, m.encode(), m.eta or now, now]
        else:
            # The rows as one JSON array: the statement is the same text for any batch, and
            # the driver neither parses nor quotes a parameter per value.
            insert_pending, params = results.pending_insert_json(connection, messages)
            insert_queued = (
                f"INSERT INTO {table} {columns} SELECT r->>0, (r->>1)::smallint, r->>2, r->>3, "
                "COALESCE((r->>4)::timestamptz, %s), 0, 0, %s "
                "FROM jsonb_array_elements(%s::jsonb) AS r")
            params += [now, now, json.dumps(
                [(m.queue, bounded_priority(m), m.id, m.encode(),
                  m.eta.isoformat() if m.eta else None) for m in messages])]
        sql = f"WITH pending AS ({insert_pending}) "
        if wake := _wake(messages, now):  # wake idle consumers, in the same statement
            sql += (f", queued AS ({insert_queued} RETURNING 1) "
                    "SELECT pg_notify(%s, %s) FROM queued LIMIT 1")
            params += [notify.QUEUE_CHANNEL, wake]
        else:
            sql += insert_queued
        with connection.cursor() as cursor:
            # A delay() outside a transaction: prepared on a connection that runs it often
            # (``prepared.py``; it reads no table, so any plan is its plan).
            prepared.execute(cursor, sql, params)
        return True

    def _copy_with_pending(self, connection: Any, messages: Sequence[Message]) -> None:
        """PostgreSQL: ``COPY`` the PENDING rows and the queue rows (in about half the time
        of the statement above for 10,000 messages), then wake idle consumers; all in one
        transaction."""
        from ..results.database import copy_pending

        now = _now()
        table = connection.ops.quote_name(QueuedMessage._meta.db_table)
        with transaction.atomic(using=self.alias), connection.cursor() as cursor:
            copy_pending(cursor, messages, now)
            with cursor.copy(f"COPY {table} (queue, priority, task_id, body, visible_at, "
                             "deliveries, runs, created_at) FROM STDIN") as copy:
                for m in messages:
                    copy.write_row((m.queue, bounded_priority(m), m.id, m.encode(), m.eta or now,
                                    0, 0, now))
        if wake := _wake(messages, now):
            notify.notify(connection, notify.QUEUE_CHANNEL, wake)

    # -- claiming ------------------------------------------------------------------------

    def fetch(self, queues: Sequence[str], owner: str, limit: int, lease: float, *,
              look: str | None = None) -> list[Delivery]:
        connection = connections[self.alias]
        now = _now()
        until = now + dt.timedelta(seconds=lease)
        token = new_token()
        if connection.vendor in ("postgresql", "sqlite"):
            # SQLite (3.40 here) runs a subquery in RETURNING that names the updated row
            # without an index: each claimed message would scan the result table (a drain of
            # 20,000 at 570/s instead of 11,000/s). There the worker looks on its own.
            look = look if connection.vendor == "postgresql" else None
            rows = self._claim_returning(connection, queues, owner, token, limit, now, until,
                                         look)
        else:
            look = None
            rows = [] if self._nothing_due(queues, now) else \
                self._claim_locking(queues, owner, token, limit, now, until)
            self._peek.idle = not rows
        rows.sort(key=lambda r: (-r[4], r[0]))
        return [Delivery(r[0], r[2], r[1], r[3], owner, r[5], token, r[6],
                         looked_up=look is not None, stored_state=r[7] if look else None)
                for r in rows]

    def wait(self, queues: Sequence[str], timeout: float, *,
             accept: Callable[[str], bool] | None = None) -> bool | None:
        """On PostgreSQL, LISTEN for the notification every publish of a due message sends
        (``notify.py``), counting only those ``accept`` takes; on SQLite, watch the
        database's files for a commit (``filewatch.py``); elsewhere None (the consumer
        polls)."""
        connection = connections[self.alias]
        if connection.vendor == "sqlite":
            path = filewatch.database_file(connection.settings_dict)
            if path is None or connection.in_atomic_block:
                return None
            return _files.wait(path, timeout)
        return notify.wait(connection, notify.QUEUE_CHANNEL, timeout, accept=accept)

    def next_due(self, queues: Sequence[str], since: dt.datetime) -> float | None:
        """The earliest ``visible_at`` after ``since`` among the queues' rows: when a
        delayed message comes due or a lease runs out (a live worker's lease is renewed
        before then, which costs one look that finds nothing). Served by the queue index;
        an idle queue holds only such rows. Where the fetch just read it, without a query."""
        if not queues:
            return None
        seen, self._peek.seen = self._peek.seen, None
        if seen is not None and seen[0] == tuple(queues) and since <= seen[1] \
                and (seen[2] is None or seen[2] > seen[1]):
            first = seen[2]  # nothing was due when the fetch read it: the first after since
        else:
            first = self._earliest(queues, since)
        return None if first is None else (first - _now()).total_seconds()

    def _earliest(self, queues: Sequence[str], after: dt.datetime | None = None
                  ) -> dt.datetime | None:
        """The earliest ``visible_at`` (after ``after``) among the queues' rows, in one
        statement of index probes: for each queue and priority (0-``MAX_PRIORITY``, all a
        row can hold), the first entry of the queue index (queue, priority, visible_at). A
        ``MIN`` over the queue would read every row it holds (6-10 ms a look with 10,000
        countdown tasks waiting on PostgreSQL). PostgreSQL probes in a ``LATERAL`` join,
        planned once (0.2 ms, where eleven subqueries took 1.5 ms to plan and run)."""
        connection = connections[self.alias]
        table = connection.ops.quote_name(QueuedMessage._meta.db_table)
        later = " AND visible_at > %s" if after is not None else ""
        bound = [connection.ops.adapt_datetimefield_value(after)] if after is not None else []
        if connection.vendor == "postgresql":
            sql = (f"SELECT MIN(f.v) FROM unnest(%s::text[]) AS q(name) "
                   f"CROSS JOIN generate_series(0, %s) AS p(n) CROSS JOIN LATERAL (SELECT "
                   f"visible_at FROM {table} WHERE queue = q.name AND priority = p.n{later} "
                   f"ORDER BY visible_at LIMIT 1) AS f(v)")
            params: list[Any] = [list(queues), MAX_PRIORITY, *bound]
        else:
            probes: list[str] = []
            params = []
            for queue in queues:
                for priority in PRIORITIES:
                    probes.append(f"SELECT (SELECT visible_at FROM {table} WHERE queue = %s "
                                  f"AND priority = %s{later} ORDER BY visible_at LIMIT 1) AS v")
                    params += [queue, priority, *bound]
            sql = f"SELECT MIN(v) FROM ({' UNION ALL '.join(probes)}) AS firsts"
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            row = cursor.fetchone()
        return parse_time(row[0] if row else None)  # SQLite: text; MySQL: naive UTC

    def stop_waiting(self) -> None:
        notify.unlisten(connections[self.alias], notify.QUEUE_CHANNEL)

    def _claim_returning(self, connection: Any, queues: Sequence[str], owner: str, token: int,
                         limit: int, now: dt.datetime, until: dt.datetime,
                         look: str | None = None) -> list[Any]:
        """``look``: the result store's state lookup, returned with each row (the claim's
        snapshot: what a look just after would see, but for a commit in between)."""
        table = connection.ops.quote_name(QueuedMessage._meta.db_table)
        postgres = connection.vendor == "postgresql"
        # A lease need not wait for the disk: on its own transaction (autocommit), the claim
        # commits with synchronous_commit off (explanation/delivery.md, "How the database
        # broker claims"); the outcome written later is durable, and so then is the claim.
        lazy = (f" FROM (SELECT {durability.LAZY}) AS lazy"
                if postgres and not connection.in_atomic_block else "")
        due, due_params = _due_ids(connection.vendor, table, queues,
                                   connection.ops.adapt_datetimefield_value(now), limit)
        sql = (
            f"UPDATE {table} SET lease_owner = %s, lease_token = %s, visible_at = %s, "
            f"deliveries = deliveries + 1{lazy} WHERE id IN ({due}) "
            "RETURNING id, queue, body, deliveries, priority, task_id, runs"
            + (", " + look.format(task_id=f"{table}.task_id") if look else "")
        )
        params = [owner, token, connection.ops.adapt_datetimefield_value(until), *due_params]
        # One statement, so atomic on its own: no BEGIN/COMMIT round trips around it; on
        # PostgreSQL outside a transaction, prepared on the connection (``prepared.py``).
        with connection.cursor() as cursor:
            prepared.execute(cursor, sql, params)
            return list(cursor.fetchall())

    def _nothing_due(self, queues: Sequence[str], now: dt.datetime) -> bool:
        """After a fetch that found nothing, MySQL and MariaDB read before they claim: one
        plain read of the queues' earliest ``visible_at`` (through the queue index), where a
        claim is a locking read and an update in a transaction. So an idle worker polls
        with that read alone, and :meth:`next_due` answers from it."""
        if not self._peek.idle:
            return False
        first = self._earliest(queues)
        self._peek.seen = (tuple(queues), now, first)
        return first is None or first > now

    def _claim_locking(self, queues: Sequence[str], owner: str, token: int, limit: int,
                       now: dt.datetime, until: dt.datetime) -> list[Any]:
        with transaction.atomic(using=self.alias):
            rows = list(
                self._rows.select_for_update(skip_locked=True)
                .filter(queue__in=queues, priority__in=PRIORITIES, visible_at__lte=now)
                .order_by("-priority", "visible_at", "id")
                .values_list("id", "queue", "body", "deliveries", "priority",
                             "task_id", "runs")[:limit]
            )
            if rows:
                self._rows.filter(id__in=[r[0] for r in rows]).update(
                    lease_owner=owner, lease_token=token, visible_at=until,
                    deliveries=F("deliveries") + 1,
                )
        return [(r[0], r[1], r[2], r[3] + 1, r[4], r[5], r[6]) for r in rows]

    # -- settling: every write is fenced by the delivery's lease token ---------------------

    def _held(self, token: int, tags: Sequence[int]) -> Any:
        return self._rows.filter(lease_token=token, id__in=list(tags))

    def ack(self, deliveries: Iterable[Delivery]) -> list[Delivery]:
        acked: list[Delivery] = []
        for token, group in _by_token(deliveries):
            for chunk in _chunks(group):
                tags = self._delete_returning(token, [d.tag for d in chunk])
                acked += [d for d in chunk if d.tag in tags]
        return acked

    def ack_statement(self, deliveries: Sequence[Delivery]) -> tuple[str, list[Any]] | None:
        """On PostgreSQL, for a batch of one claim (one token): the ack's ``DELETE``."""
        connection = connections[self.alias]
        tokens = {d.token for d in deliveries}
        if connection.vendor != "postgresql" or len(tokens) != 1 \
                or len(deliveries) > _CHUNK:
            return None
        table = connection.ops.quote_name(QueuedMessage._meta.db_table)
        return (f"DELETE FROM {table} WHERE lease_token = %s AND id = ANY(%s) RETURNING id",
                [tokens.pop(), [d.tag for d in deliveries]])

    def _delete_returning(self, token: int, tags: list[int]) -> set[int]:
        connection = connections[self.alias]
        if connection.vendor in ("postgresql", "sqlite") or getattr(
                connection, "mysql_is_mariadb", False):
            table = connection.ops.quote_name(QueuedMessage._meta.db_table)
            marks = ", ".join(["%s"] * len(tags))
            with connection.cursor() as cursor:
                cursor.execute(f"DELETE FROM {table} WHERE lease_token = %s AND id IN ({marks}) "
                               "RETURNING id", [token, *tags])
                return {row[0] for row in cursor.fetchall()}
        with transaction.atomic(using=self.alias):  # MySQL: no DELETE … RETURNING
            held = set(self._held(token, tags).select_for_update().values_list("id", flat=True))
            self._rows.filter(id__in=held).delete()
        return held

    def release(self, deliveries: Iterable[Delivery], *, count: bool = False) -> int:
        changes: dict[str, Any] = {"lease_owner": None, "lease_token": None,
                                   "visible_at": _now()}
        if not count:
            changes["deliveries"] = _UNCOUNT
        released = 0
        for token, group in _by_token(deliveries):
            for chunk in _chunks(group):
                released += self._held(token, [d.tag for d in chunk]).update(**changes)
        if released:  # for idle consumers: these are theirs to take now
            notify.notify(connections[self.alias], notify.QUEUE_CHANNEL)
        return released

    def release_owner(self, owner: str, *, keep_count: Iterable[int] = (),
                      count_all: bool = False, died_running: Iterable[int] = ()) -> int:
        keep = list(keep_count)
        now = _now()
        held = self._rows.filter(lease_owner=owner)
        died = list(died_running)
        if died:
            held.filter(id__in=died).update(runs=F("runs") + 1)
        changes = {"lease_owner": None, "lease_token": None, "visible_at": now}
        if count_all:
            return int(held.update(**changes))
        released = held.filter(id__in=keep).update(**changes)
        released += held.exclude(id__in=keep).update(
            **changes, deliveries=_UNCOUNT)
        return int(released)

    def requeue(self, delivery: Delivery, message: Message, delay: float) -> bool:
        visible_at = _now() + dt.timedelta(seconds=delay)
        return bool(self._held(delivery.token, [delivery.tag]).update(
            body=message.encode(), queue=message.queue, priority=bounded_priority(message),
            visible_at=visible_at, lease_owner=None, lease_token=None, deliveries=0, runs=0,
        ))

    def defer(self, delivery: Delivery, message: Message, delay: float) -> bool:
        return bool(self._held(delivery.token, [delivery.tag]).update(
            body=message.encode(), visible_at=_now() + dt.timedelta(seconds=max(delay, 0)),
            lease_owner=None, lease_token=None, deliveries=_UNCOUNT))

    def record_start(self, delivery: Delivery) -> bool:
        return bool(self._held(delivery.token, [delivery.tag]).update(runs=F("runs") + 1))

    def renew(self, owners: Sequence[str], lease: float) -> int:
        if not owners:
            return 0
        until = _now() + dt.timedelta(seconds=lease)
        return int(self._rows.filter(lease_owner__in=list(owners)).update(visible_at=until))

    def confirm(self, deliveries: Sequence[Delivery], lease: float) -> list[Delivery]:
        until = _now() + dt.timedelta(seconds=lease)
        held: list[Delivery] = []
        for token, group in _by_token(deliveries):
            for chunk in _chunks(group):
                tags = [d.tag for d in chunk]
                with transaction.atomic(using=self.alias):
                    current = set(self._held(token, tags).select_for_update()
                                  .values_list("id", flat=True))
                    self._rows.filter(id__in=current).update(visible_at=until)
                held += [d for d in chunk if d.tag in current]
        return held

    # -- inspection ----------------------------------------------------------------------

    def depths(self, queues: Sequence[str] | None = None) -> dict[str, int]:
        from django.db.models import Count

        qs = self._rows.all()
        if queues is not None:
            qs = qs.filter(queue__in=list(queues))
        counts = {q: 0 for q in queues or ()}
        for row in qs.values("queue").annotate(n=Count("id")).order_by():
            counts[row["queue"]] = row["n"]
        return counts

    def queue_counts(self, queues: Sequence[str] = ()) -> dict[str, QueueCounts]:
        """One aggregate query over the queue table, grouped by queue."""
        from django.db.models import Count, Q

        now = _now()
        due, free = Q(visible_at__lte=now), Q(lease_owner__isnull=True)
        rows = (self._rows.values_list("queue")
                .annotate(ready=Count("id", filter=due),
                          delayed=Count("id", filter=~due & free),
                          in_flight=Count("id", filter=~due & ~free))
                .order_by())
        counts = {queue: QueueCounts(0, 0, 0) for queue in queues}
        counts.update((queue, QueueCounts(*n)) for queue, *n in rows)
        return counts

    def purge(self, queue: str) -> Purged:
        """The queue's rows at this moment (one read), then deleted by key in batches: a
        message published meanwhile stays."""
        rows = list(self._rows.filter(queue=queue).values_list("pk", "task_id"))
        deleted = 0
        for start in range(0, len(rows), _CHUNK):
            keys = [pk for pk, _ in rows[start:start + _CHUNK]]
            deleted += self._rows.filter(pk__in=keys).delete()[0]
        return Purged(deleted, tuple(task_id for _, task_id in rows))
