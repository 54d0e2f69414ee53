"""Lease renewal and the worker's liveness row, done by the supervising process."""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..conf import get_broker
from . import connections

if TYPE_CHECKING:
    from .main import Worker

logger = logging.getLogger("django_tasks.worker")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def beat(worker: Worker, owners: Sequence[str]) -> None:
    """Renew every lease ``owners`` hold and record that the worker is alive."""
    from ..models import WorkerState

    try:
        broker = get_broker()
        broker.renew(owners, worker.lease)
        WorkerState.objects.using(_alias()).update_or_create(
            hostname=worker.hostname,
            defaults={"pid": os.getpid(), "pool": worker.pool,
                      "concurrency": worker.concurrency, "queues": ",".join(worker.queues),
                      "last_heartbeat": _now()},
            create_defaults={"pid": os.getpid(), "pool": worker.pool,
                             "concurrency": worker.concurrency,
                             "queues": ",".join(worker.queues),
                             "started_at": _now(), "last_heartbeat": _now()},
        )
    except Exception as exc:  # noqa: BLE001 - a missed beat is retried on the next one
        logger.warning("Heartbeat failed (%s); leases are renewed on the next beat", exc)
        connections.close_all()


def release(owner: str, keep_count: Sequence[object] = ()) -> int:
    try:
        return int(get_broker().release_owner(owner, keep_count=keep_count))
    except Exception as exc:  # noqa: BLE001 - the lease will lapse instead
        logger.warning("Could not release messages of %s (%s); they return when the lease "
                       "runs out", owner, exc)
        connections.close_all()
        return 0


def goodbye(worker: Worker) -> None:
    from ..models import WorkerState

    try:
        WorkerState.objects.using(_alias()).filter(hostname=worker.hostname).delete()
    except Exception:  # noqa: BLE001 - the row just ages out
        connections.close_all()


def _alias() -> str:
    """Workers are recorded beside the queue on ``django://ALIAS``, else in ``default``."""
    return str(getattr(get_broker(), "database_alias", "default"))
