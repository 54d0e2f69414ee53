"""``manage.py taskprune``: delete expired results in bounded batches."""

from __future__ import annotations

import argparse
import datetime as dt
import math
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_tasks.exceptions import TaskError
from django_tasks.results.prune import PruneReport, prune_expired


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _age(text: str) -> dt.timedelta:
    value = float(text)
    if not (math.isfinite(value) and 0 <= value <= 1e10):  # 1e10 s: about 300 years
        raise argparse.ArgumentTypeError(f"must be a number of seconds, 0 or more, not {text}")
    return dt.timedelta(seconds=value)


class Command(BaseCommand):
    help = ("Delete finished task results (SUCCESS, FAILURE, REVOKED) older than "
            "TASKS_RESULT_EXPIRES, in bounded batches. Run it from cron or a schedule.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--older-than", type=_age, metavar="SECONDS",
                            help="delete results finished more than SECONDS ago "
                                 "(instead of TASKS_RESULT_EXPIRES)")
        parser.add_argument("--batch-size", type=_positive_int, metavar="N",
                            help="rows deleted per statement (default TASKS_PRUNE_BATCH_SIZE)")
        parser.add_argument("--dry-run", action="store_true",
                            help="count what would be deleted, delete nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        age = options["older_than"]
        try:
            if age is not None and not isinstance(age, dt.timedelta):  # call_command(older_than=60)
                age = _age(str(age))
            report = prune_expired(
                older_than=age, batch_size=options["batch_size"], dry_run=options["dry_run"],
                on_batch=self._progress if options["verbosity"] > 1 else None,
            )
        except (TaskError, ValueError, OverflowError, argparse.ArgumentTypeError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(describe(report))

    def _progress(self, deleted: int) -> None:
        self.stdout.write(f"  deleted a batch of {deleted}")


def describe(report: PruneReport) -> str:
    if report.before is None:
        return "TASKS_RESULT_EXPIRES is None: results never expire; nothing to prune."
    when = report.before.isoformat(timespec="seconds")
    results = _plural(report.count, "result")
    if report.dry_run:
        return f"Would delete {results} finished before {when} (dry run)."
    folded = (f" Folded {_plural(report.counters, 'dashboard counter row')} into totals."
              if report.counters else "")
    return (f"Deleted {results} finished before {when}, in "
            f"{_plural(report.batches, 'batch', 'batches')} of at most {report.batch_size}."
            + folded)


def _plural(count: int, one: str, many: str = "") -> str:
    return f"{count} {one if count == 1 else many or one + 's'}"
