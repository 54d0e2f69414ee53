"""The worker's side of the control channel, served by its supervisor (the main process).

``serve()`` is called on every supervision tick. On PostgreSQL it costs no query until a
``NOTIFY`` on ``CONTROL_CHANNEL`` arrives (it looks every ``FALLBACK_SECONDS`` too, in case
one was missed while the connection was replaced). On SQLite it looks when the database
file changed (a commit: ``brokers/filewatch.py``), at most every ``FILE_GAP_SECONDS``, and
every ``FALLBACK_SECONDS``. Elsewhere (MariaDB/MySQL) it looks every ``LOOK_SECONDS``: an
idle worker's supervisor adds one indexed SELECT per look. Requests sent before the worker
started, too old, meant for other workers or not signed with the project's key are not acted
on; the last are logged.
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any

from django.db import connections as django_connections

from .. import notify
from ..brokers import filewatch
from ..process import connections
from . import signing
from .channel import CONTROL_CHANNEL, FRESH_SECONDS, _now, alias
from .handlers import HANDLERS, ControlError

if TYPE_CHECKING:
    from ..worker.supervisor import Pool

logger = logging.getLogger("django_tasks.control")
LOOK_SECONDS = 2.0
FALLBACK_SECONDS = 5.0
FILE_GAP_SECONDS = 0.5
#: Clocks of two hosts may differ this much: a request sent this long before the worker
#: started is still one made after it.
SKEW_SECONDS = 1.0


class ControlServer:
    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.hostname = pool.worker.hostname
        self.using = alias()
        self.started = time.time()
        self.last_id = 0
        # Rows up to this one were written before the worker started: its clock need not
        # agree with the senders' (a failed read leaves the send times to decide).
        self.baseline = self._newest()
        self.next_look = 0.0
        self.last_look = 0.0
        self._stamp: filewatch.Stamp | None = None
        self._dirty = False  # the SQLite file changed since the last look
        self._failing = False

    def serve(self) -> None:
        """Answer the requests that came since the last look, if it is time to look."""
        try:
            self._serve()
            self._failing = False
        except Exception as exc:  # noqa: BLE001 - control must never stop supervision
            if not self._failing:
                logger.warning("Cannot read control requests (%s); trying again", exc)
            self._failing = True
            connections.close_all()
            self.next_look = time.monotonic() + LOOK_SECONDS

    def _newest(self) -> int:
        from django.db.models import Max

        from ..models import ControlRequest

        try:
            newest = ControlRequest.objects.using(self.using).aggregate(Max("id"))["id__max"]
        except Exception:  # noqa: BLE001 - the first look will do without it
            connections.close_all()
            return 0
        return int(newest or 0)

    def _serve(self) -> None:
        from ..models import ControlRequest

        now = time.monotonic()
        connection = django_connections[self.using]
        woken = notify.wait(connection, CONTROL_CHANNEL, 0)
        if woken is None and connection.vendor == "sqlite":
            changed = self._file_changed(connection)
            if changed is not None:
                self._dirty = self._dirty or changed
                woken = self._dirty and now - self.last_look >= FILE_GAP_SECONDS
        if not woken and now < self.next_look:
            return
        self.last_look, self._dirty = now, False
        self.next_look = now + (LOOK_SECONDS if woken is None else FALLBACK_SECONDS)
        rows = list(ControlRequest.objects.using(self.using).filter(id__gt=self.last_id)
                    .order_by("id").values_list("id", "payload", "signature"))
        for row_id, payload, signature in rows:
            self.last_id = max(self.last_id, row_id)
            self._answer(row_id, payload, signature)

    def _file_changed(self, connection: Any) -> bool | None:
        """Whether the SQLite file changed since the last look (None: no file to watch)."""
        path = filewatch.database_file(connection.settings_dict)
        if path is None:
            return None
        stamp = filewatch.stamp(path)
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        return True

    def _answer(self, row_id: int, payload: str, signature: str) -> None:
        if not signing.verify(payload, signature):
            logger.warning("Dropped control request %d: its signature is bad or missing "
                           "(it was not sent with this project's SECRET_KEY)", row_id)
            return
        try:
            data = json.loads(payload)
            sent = float(data["sent"])
            nonce, command = str(data["id"]), str(data["command"])
            arguments = data.get("arguments") or {}
            destination = data.get("destination") or []
        except (ValueError, KeyError, TypeError):
            logger.warning("Dropped control request %d: it cannot be read", row_id)
            return
        before = row_id <= self.baseline or (not self.baseline
                                             and sent < self.started - SKEW_SECONDS)
        if before or time.time() - sent > FRESH_SECONDS:
            return  # made before this worker started, or stale: not for us
        if destination and self.hostname not in destination:
            return
        body = self._run(command, arguments if isinstance(arguments, dict) else {})
        self._reply(nonce, body)
        after, self.pool.after_reply = self.pool.after_reply, None
        if after is not None:
            after()

    def _run(self, command: str, arguments: dict[str, Any]) -> dict[str, Any]:
        handler = HANDLERS.get(command)
        if handler is None:
            return {"error": f"unknown command {command!r}"}
        logger.info("Control: %s %s", command, json.dumps(arguments, sort_keys=True)[:200])
        try:
            return {"ok": handler(self.pool, arguments)}
        except ControlError as exc:
            return {"error": str(exc)}
        except Exception as exc:
            logger.exception("Control command %s failed", command)
            return {"error": f"{type(exc).__name__}: {exc}"}

    def _reply(self, nonce: str, body: dict[str, Any]) -> None:
        from ..models import ControlReply

        payload = json.dumps({"id": nonce, "hostname": self.hostname, "reply": body},
                             sort_keys=True, default=str)
        ControlReply.objects.using(self.using).create(
            nonce=nonce, hostname=self.hostname, payload=payload,
            signature=signing.sign(payload), created_at=_now())
