"""Sending a control request and gathering the replies (the caller's side).

Replies are gathered until every worker that should answer has (the ``--destination``
names, or the workers whose heartbeat is fresh) or until ``timeout``. A reply whose signature
does not check is logged and left out.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connections

from .. import notify
from ..conf import get_broker, task_settings
from . import signing

logger = logging.getLogger("django_tasks.control")

#: PostgreSQL channel the supervisors listen on.
CONTROL_CHANNEL = "django_tasks_control"
#: Requests and replies older than this are deleted by the next sender.
KEEP_SECONDS = 60.0
#: A worker acts on a request only this long after it was sent (a copied row is refused).
FRESH_SECONDS = 30.0
DEFAULT_TIMEOUT = 5.0  # the wait ends as soon as every worker online has answered
_POLL = 0.05


@dataclass(frozen=True)
class Reply:
    hostname: str
    body: dict[str, Any]

    @property
    def ok(self) -> bool:
        return "error" not in self.body


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def alias() -> str:
    """The database of the control rows: the one the workers' heartbeat rows live in."""
    return str(get_broker().home_alias)


def online_workers(using: str | None = None) -> list[str]:
    """Host names of the workers whose heartbeat is younger than a lease."""
    from ..models import WorkerState

    stale = _now() - dt.timedelta(seconds=float(task_settings.LEASE_SECONDS))
    return list(WorkerState.objects.using(using or alias())
                .filter(kind="worker", last_heartbeat__gte=stale)
                .order_by("hostname").values_list("hostname", flat=True))


def send(command: str, arguments: dict[str, Any] | None = None, *,
         destination: Sequence[str] | None = None) -> str:
    """Write a signed request; its nonce (what replies carry)."""
    from ..models import ControlReply, ControlRequest

    using = alias()
    now = _now()
    old = now - dt.timedelta(seconds=KEEP_SECONDS)
    ControlRequest.objects.using(using).filter(created_at__lt=old).delete()
    ControlReply.objects.using(using).filter(created_at__lt=old).delete()
    nonce = secrets.token_hex(16)
    payload = json.dumps({"id": nonce, "command": command, "arguments": arguments or {},
                          "destination": sorted(destination or []), "sent": time.time()},
                         sort_keys=True)
    ControlRequest.objects.using(using).create(
        nonce=nonce, payload=payload, signature=signing.sign(payload), created_at=now)
    notify.notify(connections[using], CONTROL_CHANNEL)
    return nonce


def gather(nonce: str, *, timeout: float, destination: Sequence[str] | None = None,
           expected: Sequence[str] | None = None) -> list[Reply]:
    """The valid replies to ``nonce``, waiting until ``expected`` (the destination, else
    the workers online now) have answered or ``timeout`` has passed."""
    from ..models import ControlReply

    using = alias()
    wanted = set(destination or expected or online_workers(using))
    deadline = time.monotonic() + timeout
    replies: dict[str, Reply] = {}
    seen: set[int] = set()
    while True:
        rows = ControlReply.objects.using(using).filter(nonce=nonce).exclude(id__in=seen)
        for row in rows:
            seen.add(row.id)
            body = _checked(row.payload, row.signature, nonce)
            if body is not None and (not destination or row.hostname in destination):
                replies[row.hostname] = Reply(row.hostname, body)
        if (wanted and wanted <= set(replies)) or time.monotonic() >= deadline:
            break
        time.sleep(_POLL)
    return [replies[name] for name in sorted(replies)]


def _checked(payload: str, signature: str, nonce: str) -> dict[str, Any] | None:
    if not signing.verify(payload, signature):
        logger.warning("A control reply with a bad or missing signature was ignored")
        return None
    try:
        data = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("id") != nonce:
        return None
    body = data.get("reply")
    return body if isinstance(body, dict) else None


def broadcast(command: str, arguments: dict[str, Any] | None = None, *,
              destination: Sequence[str] | None = None, timeout: float = DEFAULT_TIMEOUT,
              reply: bool = True) -> list[Reply]:
    """Send ``command`` to the workers (those named in ``destination``, else all) and
    gather their replies (none if not ``reply``)."""
    expected = None if destination else online_workers()
    nonce = send(command, arguments, destination=destination)
    if not reply:
        return []
    return gather(nonce, timeout=timeout, destination=destination, expected=expected)
