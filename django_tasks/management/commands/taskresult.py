"""``manage.py taskresult <id>``: print a stored result."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_tasks.exceptions import ResultBackendDisabled
from django_tasks.result import AsyncResult


class Command(BaseCommand):
    help = "Print the state and result of a task by id."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("task_id")
        parser.add_argument("--show-traceback", action="store_true", dest="show_traceback",
                            help="print the traceback of a failed task")

    def handle(self, *args: Any, **options: Any) -> None:
        result = AsyncResult(options["task_id"])
        try:
            if not result.exists():
                raise CommandError(f"No task with id {result.id} is stored.")
            self.stdout.write(f"{result.name or '?'}[{result.id}] {result.state}")
            self.stdout.write(repr(result.result))
        except ResultBackendDisabled as exc:
            raise CommandError(str(exc)) from exc
        if options["show_traceback"] and result.traceback:
            self.stdout.write(result.traceback)
