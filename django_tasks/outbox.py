"""The transactional outbox: enqueue inside ``transaction.atomic()`` on a broker that cannot
join the transaction (Redis, RabbitMQ).

``delay()`` in an open transaction writes its message to the ``OutboxMessage`` table in that
transaction, and registers an ``on_commit`` hook. So:

* a rollback (of the transaction, or of the savepoint the call was made in) takes the row
  and the hook with it: nothing is published;
* after the commit the hook claims its rows, publishes them and deletes them: the task is on
  the broker a few hundred microseconds after the commit, from the same process;
* if that process dies between the commit and the publish, or the broker is down then, the
  row stays; a worker's relay (every second) claims rows older than ``GRACE`` and
  publishes them.

A broker that cannot delay messages itself (AMQP) gets its countdowns, etas and retry delays
through here too (``hold``): a row with ``due_at``, published by the relay when it is due,
so that no worker holds a delayed message unacknowledged in its memory.

A claim is an ``UPDATE`` that only takes a row nobody holds (or whose claim has run out),
so two processes never publish one row at the same time. The one window left is a
publisher that dies after the broker took the message and before its ``DELETE``: the relay
then publishes the row again when the claim runs out, or at once where the publisher was a
worker's pool process (its supervisor ends the claims of a process that died, which carry
its ``pid@host``). Rows are published with
``Broker.publish_once``, keyed by the row: Redis remembers the key in the same script that
queues the message and drops the second copy (exactly once). A broker that cannot (AMQP)
publishes it again, and the worker, which checks for a final outcome before it runs a
message, acks the second copy without running it once the first has finished.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING

from django.db import transaction

from . import clock
from .brokers.base import Broker
from .message import Message, origin

if TYPE_CHECKING:
    from django.db.models import QuerySet

    from .models import OutboxMessage

logger = logging.getLogger("django_tasks.outbox")

#: How long a committed row waits for its own process before a relay takes it.
GRACE = dt.timedelta(seconds=10)
#: How long a claim holds a row: a publisher that has not deleted it by then is taken to be
#: dead and the row is published again.
CLAIM = dt.timedelta(seconds=60)
#: Rows a relay publishes in one pass.
BATCH = 500


def needed(broker: Broker, alias: str) -> bool:
    """Whether a message published now must go through the outbox: a transaction is open
    on ``alias`` and the broker can neither join it nor lose its messages with the process."""
    caps = broker.capabilities
    return (not caps.transactional and caps.durable
            and transaction.get_connection(alias).in_atomic_block)


def write(broker: Broker, messages: Sequence[Message], alias: str) -> None:
    """Store ``messages`` in the caller's transaction on ``alias``; publish them after its
    commit."""
    from .models import OutboxMessage

    now = clock.now()
    rows = OutboxMessage.objects.using(alias).bulk_create(
        [OutboxMessage(task_id=m.id, queue=m.queue, body=m.encode(), created_at=now)
         for m in messages])
    if any(row.pk is None for row in rows):  # no ids back from a bulk insert (MySQL)
        found = dict(OutboxMessage.objects.using(alias)
                     .filter(created_at=now, task_id__in=[m.id for m in messages])
                     .values_list("task_id", "pk"))
        pairs = [(found[m.id], m) for m in messages]
    else:
        pairs = [(row.pk, m) for row, m in zip(rows, messages, strict=True)]
    transaction.on_commit(lambda: publish_committed(broker, pairs, alias), using=alias)


def once_key(pk: int, task_id: str) -> str:
    """What a broker that can deduplicate remembers of a published outbox row."""
    return f"outbox:{pk}:{task_id}"


def hold(messages: Sequence[Message], alias: str) -> None:
    """Keep delayed ``messages`` here until their ``eta``, for a broker that cannot delay
    messages itself (AMQP: a delayed message would sit unacked in a worker's memory). Written
    in the caller's transaction, if one is open; a worker's relay publishes each when due."""
    from .models import OutboxMessage

    now = clock.now()
    OutboxMessage.objects.using(alias).bulk_create(
        [OutboxMessage(task_id=m.id, queue=m.queue, body=m.encode(), created_at=now,
                       due_at=m.eta or now) for m in messages])


def publish_committed(broker: Broker, pairs: Sequence[tuple[int, Message]],
                      alias: str) -> int:
    """After the commit: claim the rows (``(pk, message)`` pairs), publish what was claimed,
    delete it. Never raises: the data is committed, and what fails here is left to the
    relay."""
    from .models import OutboxMessage

    try:
        claim, claimed = _claim(OutboxMessage.objects.using(alias).filter(
            pk__in=[pk for pk, _ in pairs], claimed_until__isnull=True), alias)
        if not claimed:
            return 0
        if claimed < len(pairs):  # a relay got there first (a very slow commit hook)
            taken = set(OutboxMessage.objects.using(alias).filter(claim=claim)
                        .values_list("pk", flat=True))
            pairs = [(pk, m) for pk, m in pairs if pk in taken]
        broker.publish_once([(once_key(pk, m.id), m) for pk, m in pairs])
        OutboxMessage.objects.using(alias).filter(claim=claim).delete()
    except Exception as exc:  # noqa: BLE001 - the relay publishes what is left
        logger.warning(
            "Could not publish %d message(s) after the commit (%s: %s); they stay in the "
            "outbox, and a worker publishes them within %d seconds of the broker being back",
            len(pairs), type(exc).__name__, exc, (GRACE + CLAIM).seconds)
        return 0
    return len(pairs)


def relay(broker: Broker, alias: str, limit: int = BATCH) -> int:
    """Publish rows left behind by a process that died (or lost the broker) after its
    commit; how many. Called by workers on every heartbeat; raises on broker errors."""
    from .models import OutboxMessage

    now = clock.now()
    rows = OutboxMessage.objects.using(alias)
    unclaimed = rows.filter(claimed_until__isnull=True)
    free = (unclaimed.filter(due_at__isnull=True, created_at__lt=now - GRACE)
            | unclaimed.filter(due_at__lte=now)
            | rows.filter(claimed_until__lt=now))
    candidates = list(free.order_by("pk").values_list("pk", flat=True)[:limit])
    if not candidates:
        return 0
    claim, claimed = _claim(free.filter(pk__in=candidates), alias)
    if not claimed:
        return 0
    taken = rows.filter(claim=claim).order_by("pk").values_list("pk", "body")
    keyed = [(once_key(pk, message.id), message)
             for pk, message in ((pk, Message.decode(body)) for pk, body in taken)]
    broker.publish_once(keyed)
    rows.filter(claim=claim).delete()
    logger.debug("Published %d message(s) from the outbox", len(keyed))
    return len(keyed)


def next_due(alias: str, since: dt.datetime) -> float | None:
    """Seconds from now until the first held row due after ``since`` comes due (a delayed
    message kept for a broker that cannot delay; negative if that is past), or None when
    none is held: a relay begun at ``since`` runs again then, not a whole
    ``RELAY_SECONDS`` later. The partial index on ``due_at`` gives it in one probe."""
    from django.db.models import Min

    from .models import OutboxMessage

    first = (OutboxMessage.objects.using(alias).filter(due_at__gt=since)
             .aggregate(first=Min("due_at"))["first"])
    return None if first is None else (first - clock.now()).total_seconds()


def waiting(alias: str, now: dt.datetime | None = None) -> dict[str, tuple[int, int]]:
    """Per queue, the rows not published yet: ``(unsent, held)``. *Unsent* rows are due
    (committed, or held and due) and wait for their process or a relay; *held* rows are
    delayed messages not due yet, kept here for a broker that cannot delay (AMQP). One
    query, grouped by queue."""
    from django.db.models import Count, Q

    from .models import OutboxMessage

    later = Q(due_at__gt=now or clock.now())
    rows = (OutboxMessage.objects.using(alias).values_list("queue")
            .annotate(unsent=Count("id", filter=~later), held=Count("id", filter=later))
            .order_by())
    return {queue: (int(unsent), int(held)) for queue, unsent, held in rows}


def release_claims(alias: str, claimer: str) -> int:
    """End the claims of ``claimer`` (``pid@host``), a process known to have died: the next
    relay publishes its rows, instead of waiting for the claims to run out. How many."""
    from .models import OutboxMessage

    ended = clock.now() - dt.timedelta(seconds=1)
    return OutboxMessage.objects.using(alias).filter(
        claimed_by=claimer, claimed_until__gt=ended).update(claimed_until=ended)


def _claim(rows: QuerySet[OutboxMessage], alias: str) -> tuple[int, int]:
    """Claim ``rows`` (free rows) under a new claim; the claim and how many rows it took."""
    claim = secrets.randbits(62) + 1
    with transaction.atomic(using=alias):
        taken = rows.update(claim=claim, claimed_until=clock.now() + CLAIM,
                            claimed_by=origin())
    return claim, taken
