"""Lease renewal and the worker's liveness row, done by the supervising process."""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from django.db import (
    IntegrityError,
    InterfaceError,
    OperationalError,
    ProgrammingError,
    transaction,
)

from ..conf import get_broker
from ..exceptions import BrokerUnreachable, ConfigurationError, WorkerNameInUse
from . import connections

if TYPE_CHECKING:
    from .main import Worker

logger = logging.getLogger("django_tasks.worker")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _fields(worker: Worker) -> dict[str, Any]:
    return {"pid": os.getpid(), "pool": worker.pool, "concurrency": worker.concurrency,
            "queues": ",".join(worker.queues)}


def register(worker: Worker, poll: float = 0.25) -> None:
    """Take the worker's name in the worker table before consuming anything.

    A database that does not answer yet (the worker started before it) is waited for, with
    one log line per try, for up to the stall timeout; then :class:`BrokerUnreachable`.
    Missing tables raise :class:`ConfigurationError` (run ``migrate``).

    A name is free when no row holds it, or when its row stops being renewed: a worker that
    was killed leaves its row behind, so a row is watched for two of our heartbeats before it
    is taken over (at once if it is older than a lease). A row whose heartbeat moves belongs
    to a live worker: raise :class:`WorkerNameInUse` rather than share its leases.
    """
    wait = worker.stall_timeout or DEFAULT_STARTUP_WAIT
    deadline, failures = time.monotonic() + wait, 0
    while True:
        try:
            return _register(worker, poll)
        except (OperationalError, InterfaceError, ProgrammingError) as exc:
            connections.close_all()
            if _missing_table(exc):
                raise ConfigurationError(
                    f"The django_tasks tables are missing from database {_alias()!r} "
                    f"({_first_line(exc)}): run `manage.py migrate` first.") from None
            failures += 1
            if time.monotonic() >= deadline:
                raise BrokerUnreachable(
                    f"The database {_alias()!r} did not answer for {wait:g}s "
                    f"({_first_line(exc)}).") from None
            pause = min(2.0 ** (failures - 1), 10.0)
            logger.warning("Cannot reach the database %r to start (%s); trying again in %gs",
                           _alias(), _first_line(exc), pause)
            time.sleep(pause)


DEFAULT_STARTUP_WAIT = 120.0


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _missing_table(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "no such table" in text or ("does not exist" in text and "relation" in text) \
        or "doesn't exist" in text


def _register(worker: Worker, poll: float) -> None:
    from ..models import WorkerState

    rows = WorkerState.objects.using(_alias())
    deadline = time.monotonic() + 2 * worker.heartbeat + 1
    seen: tuple[int, dt.datetime] | None = None
    while True:
        now = _now()
        try:
            with transaction.atomic(using=_alias()):
                rows.create(hostname=worker.hostname, started_at=now, last_heartbeat=now,
                            **_fields(worker))
            return
        except IntegrityError:
            pass
        current = rows.filter(hostname=worker.hostname).values_list(
            "pid", "last_heartbeat").first()
        if current is None:
            continue  # it was deleted meanwhile: create it
        if seen is None:
            seen = current
            logger.info("Worker name %s is recorded as running (pid %s, last heartbeat %s); "
                        "waiting to see whether it is alive", worker.hostname, *current)
        elif current != seen:
            raise WorkerNameInUse(
                f"Another worker named {worker.hostname!r} is running (pid {current[0]}, "
                f"heartbeat at {current[1].isoformat()}). Give this worker its own name with "
                "--hostname (e.g. -n worker2@%h), or stop the other one first.")
        stale = now - current[1] > dt.timedelta(seconds=worker.lease)
        if stale or time.monotonic() > deadline:
            # Compare and swap: of two workers taking over one name, only one succeeds.
            if rows.filter(hostname=worker.hostname, pid=current[0],
                           last_heartbeat=current[1]).update(
                    started_at=now, last_heartbeat=now, **_fields(worker)):
                logger.info("Took over the name %s from a worker that stopped beating",
                            worker.hostname)
                return
            continue
        time.sleep(poll)


def beat(worker: Worker, owners: Sequence[str]) -> bool:
    """Renew every lease ``owners`` hold and record that the worker is alive; False if
    that failed (it is tried again on the next beat)."""
    from ..models import WorkerState

    try:
        broker = get_broker()
        broker.renew(owners, worker.lease)
        WorkerState.objects.using(_alias()).update_or_create(
            hostname=worker.hostname,
            defaults={**_fields(worker), "last_heartbeat": _now()},
            create_defaults={**_fields(worker), "started_at": _now(), "last_heartbeat": _now()},
        )
    except Exception as exc:  # noqa: BLE001 - a missed beat is retried on the next one
        logger.warning("Heartbeat failed (%s); leases are renewed on the next beat", exc)
        connections.close_all()
        return False
    return True


def release(owner: str, keep_count: Sequence[int] = (), *, count_all: bool = False) -> int:
    """Hand back what ``owner`` holds: those in ``keep_count`` (or all) count a delivery."""
    try:
        return int(get_broker().release_owner(owner, keep_count=keep_count,
                                              count_all=count_all))
    except Exception as exc:  # noqa: BLE001 - the lease will lapse instead
        logger.warning("Could not release messages of %s (%s); they return when the lease "
                       "runs out", owner, exc)
        connections.close_all()
        return 0


def goodbye(worker: Worker) -> None:
    from ..models import WorkerState

    try:
        WorkerState.objects.using(_alias()).filter(hostname=worker.hostname,
                                                   pid=os.getpid()).delete()
    except Exception:  # noqa: BLE001 - the row just ages out
        connections.close_all()


def _alias() -> str:
    """Workers are recorded beside the queue on ``django://ALIAS``, else in ``default``."""
    return get_broker().database_alias
