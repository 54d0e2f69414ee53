"""``manage.py taskpurge [--queue Q ...] [--force]``: delete every message waiting on the
broker's queues (``celery purge``), after asking."""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_tasks.conf import get_broker, task_settings
from django_tasks.purging import purge


class Command(BaseCommand):
    help = ("Delete the messages waiting on the broker's queues (all known queues, or those "
            "named). Asks first; --force for scripts.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--queue", "-Q", action="append", dest="queues", metavar="QUEUE",
                            help="a queue to purge (repeat, or comma-separate); default: all")
        parser.add_argument("--force", "-f", action="store_true",
                            help="do not ask (for scripts)")
        parser.add_argument("--json", action="store_true", help="print JSON for scripts")

    def handle(self, *args: Any, **options: Any) -> None:
        broker = get_broker()
        named = [q.strip() for item in options["queues"] or [] for q in item.split(",")
                 if q.strip()]
        depths = broker.depths(named or None)
        queues = named or sorted(set(depths) | {str(task_settings.DEFAULT_QUEUE)})
        waiting = sum(depths.get(q, 0) for q in queues)
        if not options["force"]:
            if not sys.stdin.isatty():
                raise CommandError(
                    f"This would delete {waiting} message(s) from {', '.join(queues)}; it asks "
                    "for confirmation in a terminal. Add --force to purge without asking.")
            answer = input(f"Delete {waiting} message(s) from {', '.join(queues)} on "
                           f"{broker.describe()}? Their tasks will never run. [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                self.stdout.write("Nothing was deleted.")
                return
        purged = purge(queues)
        if options["json"]:
            self.stdout.write(json.dumps({"purged": purged, "total": sum(purged.values())}))
            return
        for queue, count in purged.items():
            self.stdout.write(f"{queue}: {count} message(s) deleted")
        self.stdout.write(f"Purged {sum(purged.values())} message(s).")
