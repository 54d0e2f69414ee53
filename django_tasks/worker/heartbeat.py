"""Lease renewal and the worker's liveness row, done by the supervising process."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .. import clock, outbox
from ..brokers.base import Broker
from ..conf import get_broker
from ..message import origin_of
from ..process import connections, liveness

if TYPE_CHECKING:
    from .main import Worker

logger = logging.getLogger("django_tasks.worker")

#: How often a worker publishes what is due in the outbox (brokers outside the database).
RELAY_SECONDS = 1.0
#: How long after a held message's due time the relay looks (a look a moment early would
#: find it not due yet).
RELAY_MARGIN_SECONDS = 0.002


def identity(worker: Worker) -> liveness.Identity:
    """The worker as its liveness row records it; the row lives beside the queue on
    ``django://ALIAS``, else in ``default``."""
    return liveness.Identity(
        hostname=worker.hostname, kind="worker", pool=worker.pool,
        concurrency=worker.concurrency, queues=",".join(worker.queues),
        heartbeat=worker.heartbeat, stale_after=worker.lease,
        startup_wait=worker.stall_timeout, alias=get_broker().home_alias)


def register(worker: Worker, poll: float = 0.25) -> None:
    """Take the worker's name before consuming anything (see ``process.liveness``)."""
    liveness.register(identity(worker), poll)


def beat(worker: Worker, owners: Sequence[str], totals: tuple[int, int] = (0, 0)) -> bool:
    """Renew every lease ``owners`` hold and record that the worker is alive, with the tasks
    it ran and failed (``totals``); False if that failed (it is tried again on the next
    beat)."""
    try:
        broker = get_broker()
        if broker.capabilities.leases:
            broker.renew(owners, worker.lease)
        liveness.touch(identity(worker),
                       {"tasks_done": totals[0], "tasks_failed": totals[1]})
    except Exception as exc:  # noqa: BLE001 - a missed beat is retried on the next one
        logger.warning("Heartbeat failed (%s); leases are renewed on the next beat", exc)
        connections.close_all()
        return False
    return True


def relay_outbox(broker: Broker) -> float:
    """Publish outbox rows that are due: delayed messages held for a broker that cannot
    delay, and rows whose process died between its commit and its publish. Called by the
    supervisor every ``RELAY_SECONDS``, or sooner when a held message comes due before
    then: returns the seconds until the next call."""
    if not _has_outbox(broker):
        return RELAY_SECONDS
    try:
        since = clock.now()
        if outbox.relay(broker, broker.home_alias) >= outbox.BATCH:
            return 0.0  # more may be due: the next tick relays them
        if broker.capabilities.native_delays:
            return RELAY_SECONDS
        due = outbox.next_due(broker.home_alias, since)
    except Exception as exc:  # noqa: BLE001 - the rows stay; the next beat tries again
        logger.warning("Could not publish messages left in the outbox (%s); tried again on "
                       "the next heartbeat", exc)
        connections.close_all()
        return RELAY_SECONDS
    return RELAY_SECONDS if due is None else \
        min(RELAY_SECONDS, max(due, 0.0) + RELAY_MARGIN_SECONDS)


def release_outbox_claims(broker: Broker, pid: int) -> None:
    """A pool process died: its outbox claims end now, so that the next relay publishes
    what it had claimed and not published (the claims would otherwise hold the rows for
    ``outbox.CLAIM``)."""
    if not _has_outbox(broker):
        return
    try:
        released = outbox.release_claims(broker.home_alias, origin_of(pid))
    except Exception as exc:  # noqa: BLE001 - the claims run out by themselves
        logger.warning("Could not end the outbox claims of process %d (%s); they run out "
                       "within %d s", pid, exc, outbox.CLAIM.seconds)
        connections.close_all()
        return
    if released:
        logger.warning("%d outbox message(s) claimed by process %d, which died before it "
                       "published them, go out with the next relay", released, pid)


def _has_outbox(broker: Broker) -> bool:
    """Messages for ``broker`` go through the outbox: it is outside the database, durable."""
    caps = broker.capabilities
    return not caps.transactional and caps.durable


def release(owner: str, keep_count: Sequence[int] = (), *, count_all: bool = False,
            died_running: Sequence[int] = ()) -> int:
    """Hand back what ``owner`` holds: those in ``keep_count`` (or all) count a delivery,
    those in ``died_running`` a run that took their process down. A broker without leases
    does this itself when the owner's connection ends."""
    broker = get_broker()
    if not broker.capabilities.leases:
        return 0
    try:
        return int(broker.release_owner(owner, keep_count=keep_count,
                                              count_all=count_all,
                                              died_running=died_running))
    except Exception as exc:  # noqa: BLE001 - the lease will lapse instead
        logger.warning("Could not release messages of %s (%s); they return when the lease "
                       "runs out", owner, exc)
        connections.close_all()
        return 0


def goodbye(worker: Worker) -> None:
    liveness.goodbye(identity(worker))
