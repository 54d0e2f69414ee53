"""``manage.py taskstatus``: the workers and beats alive now, one line each, as
``celery status`` prints them; read from their liveness rows, so no worker is disturbed."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from django_tasks import clock
from django_tasks.conf import get_broker, task_settings
from django_tasks.models import WorkerState

#: Exit status when no worker is alive (``EX_UNAVAILABLE``, as ``celery status`` exits).
NONE_ONLINE = 69


class Command(BaseCommand):
    help = "List the workers (and beats) alive now; exit status 69 when none is."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print JSON for scripts")

    def handle(self, *args: Any, **options: Any) -> None:
        # A row is alive while its heartbeat is younger than a lease: past that, its leases
        # have run out too and another worker may take what it held.
        stale = clock.now() - dt.timedelta(seconds=float(task_settings.LEASE_SECONDS))
        rows = list(WorkerState.objects.using(get_broker().home_alias)
                    .order_by("kind", "hostname"))
        online = [r for r in rows if r.last_heartbeat >= stale]
        if options["json"]:
            self.stdout.write(json.dumps([{
                "hostname": r.hostname, "kind": r.kind, "online": r in online, "pid": r.pid,
                "pool": r.pool, "concurrency": r.concurrency, "queues": r.queues.split(","),
                "last_heartbeat": r.last_heartbeat.isoformat()} for r in rows], indent=2))
        else:
            for row in rows:
                if row in online:
                    self.stdout.write(f"{row.hostname}: OK" + (" (beat)" if row.kind == "beat"
                                                               else ""))
                else:
                    ago = (clock.now() - row.last_heartbeat).total_seconds()
                    self.stdout.write(f"{row.hostname}: no heartbeat for {ago:.0f}s (gone?)")
            count = sum(1 for r in online if r.kind == "worker")
            self.stdout.write("")
            self.stdout.write(f"{count} node{'' if count == 1 else 's'} online.")
        if not any(r.kind == "worker" for r in online):
            if not options["json"]:
                self.stderr.write("Error: no worker is alive.")
            raise SystemExit(NONE_ONLINE)
