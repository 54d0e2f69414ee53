"""A long-running process's row in the liveness table (``WorkerState``): its name, kind and
heartbeat, and waiting for a database that does not answer yet when it starts.

A name is held by one live process at a time. A process that was killed leaves its row
behind, so a row is watched for two heartbeats before it is taken over (at once if it is
older than ``stale_after``); a row whose heartbeat moves belongs to a live process, and the
name is refused (:class:`WorkerNameInUse`) rather than shared.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

from django.db import (
    IntegrityError,
    InterfaceError,
    OperationalError,
    ProgrammingError,
    transaction,
)

from ..exceptions import BrokerUnreachable, ConfigurationError, WorkerNameInUse
from . import connections

logger = logging.getLogger("django_tasks.process")
#: How long a process waits at start for a database that does not answer, by default.
DEFAULT_STARTUP_WAIT = 120.0


@dataclass(frozen=True)
class Identity:
    """Who a process is, as its liveness row records it."""

    hostname: str
    kind: str = "worker"  # or "beat"
    pool: str = ""
    concurrency: int = 0
    queues: str = ""
    heartbeat: float = 5.0  # seconds between beats
    stale_after: float = 30.0  # a row this old belongs to a dead process
    startup_wait: float | None = DEFAULT_STARTUP_WAIT
    alias: str = "default"  # the database the row lives in

    def fields(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "kind": self.kind, "pool": self.pool,
                "concurrency": self.concurrency, "queues": self.queues}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def register(identity: Identity, poll: float = 0.25) -> None:
    """Take the process's name before it starts work.

    A database that does not answer yet is waited for, with one log line per try, for up to
    ``startup_wait`` seconds; then :class:`BrokerUnreachable`. Missing tables raise
    :class:`ConfigurationError` (run ``migrate``)."""
    wait = identity.startup_wait or DEFAULT_STARTUP_WAIT
    deadline, failures = time.monotonic() + wait, 0
    while True:
        try:
            return _take_name(identity, poll)
        except (OperationalError, InterfaceError, ProgrammingError) as exc:
            connections.close_all()
            if _missing_table(exc):
                raise ConfigurationError(
                    f"The django_tasks tables are missing from database {identity.alias!r} "
                    f"({_first_line(exc)}): run `manage.py migrate` first.") from None
            failures += 1
            if time.monotonic() >= deadline:
                raise BrokerUnreachable(
                    f"The database {identity.alias!r} did not answer for {wait:g}s "
                    f"({_first_line(exc)}).") from None
            pause = min(2.0 ** (failures - 1), 10.0)
            logger.warning("Cannot reach the database %r to start (%s); trying again in %gs",
                           identity.alias, _first_line(exc), pause)
            time.sleep(pause)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _missing_table(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "no such table" in text or ("does not exist" in text and "relation" in text) \
        or "doesn't exist" in text


def _take_name(identity: Identity, poll: float) -> None:
    from ..models import WorkerState

    rows = WorkerState.objects.using(identity.alias)
    deadline = time.monotonic() + 2 * identity.heartbeat + 1
    seen: tuple[int, dt.datetime] | None = None
    what = identity.kind
    while True:
        now = _now()
        try:
            with transaction.atomic(using=identity.alias):
                rows.create(hostname=identity.hostname, started_at=now, last_heartbeat=now,
                            **identity.fields())
            return
        except IntegrityError:
            pass
        current = rows.filter(hostname=identity.hostname).values_list(
            "pid", "last_heartbeat").first()
        if current is None:
            continue  # it was deleted meanwhile: create it
        if seen is None:
            seen = current
            logger.info("The name %s is recorded as running (pid %s, last heartbeat %s); "
                        "waiting to see whether it is alive", identity.hostname, *current)
        elif current != seen:
            raise WorkerNameInUse(
                f"Another {what} named {identity.hostname!r} is running (pid {current[0]}, "
                f"heartbeat at {current[1].isoformat()}). Give this {what} its own name with "
                "--hostname (e.g. -n worker2@%h), or stop the other one first.")
        stale = now - current[1] > dt.timedelta(seconds=identity.stale_after)
        if stale or time.monotonic() > deadline:
            # Compare and swap: of two processes taking over one name, only one succeeds.
            if rows.filter(hostname=identity.hostname, pid=current[0],
                           last_heartbeat=current[1]).update(
                    started_at=now, last_heartbeat=now, **identity.fields()):
                logger.info("Took over the name %s from a %s that stopped beating",
                            identity.hostname, what)
                return
            continue
        time.sleep(poll)


def touch(identity: Identity, counts: dict[str, int] | None = None) -> None:
    """Record that the process is alive, with ``counts`` (``tasks_done``, ``tasks_failed``)
    where it has them (raises if the database does not answer)."""
    from ..models import WorkerState

    now = _now()
    fields = {**identity.fields(), **(counts or {}), "last_heartbeat": now}
    WorkerState.objects.using(identity.alias).update_or_create(
        hostname=identity.hostname, defaults=fields,
        create_defaults={**fields, "started_at": now},
    )


def goodbye(identity: Identity) -> None:
    """Remove the process's own row (a row another process took over is left alone)."""
    from ..models import WorkerState

    try:
        WorkerState.objects.using(identity.alias).filter(hostname=identity.hostname,
                                                         pid=os.getpid()).delete()
    except Exception:  # noqa: BLE001 - the row just ages out
        connections.close_all()
