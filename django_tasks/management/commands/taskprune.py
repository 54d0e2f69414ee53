"""``manage.py taskprune``: delete expired results in bounded batches."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_tasks.conf import get_result_store, task_settings


class Command(BaseCommand):
    help = ("Delete finished task results older than TASKS_RESULT_EXPIRES, in batches "
            "(run it from cron, or schedule it).")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--older-than", type=float, default=None, metavar="SECONDS",
                            help="override TASKS_RESULT_EXPIRES for this run")
        parser.add_argument("--batch-size", type=int, default=None,
                            help="rows deleted per statement (default TASKS_PRUNE_BATCH_SIZE)")

    def handle(self, *args: Any, **options: Any) -> None:
        store = get_result_store()
        if store is None:
            raise CommandError("TASKS_RESULT_BACKEND is None: there are no results to prune.")
        if options["older_than"] is not None:
            expires: dt.timedelta | None = dt.timedelta(seconds=options["older_than"])
        else:
            expires = task_settings.result_expires
        if expires is None:
            self.stdout.write("TASKS_RESULT_EXPIRES is None: results never expire.")
            return
        batch = int(options["batch_size"] or task_settings.PRUNE_BATCH_SIZE)
        if batch < 1:
            raise CommandError("--batch-size must be at least 1.")
        before = dt.datetime.now(dt.UTC) - expires
        total = 0
        while True:
            deleted = store.prune(before, batch)
            total += deleted
            if deleted < batch:
                break
        self.stdout.write(f"Deleted {total} results finished before {before.isoformat()}.")
