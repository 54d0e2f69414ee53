"""``manage.py taskresult <id> [-t NAME]``: print a stored result, like ``celery result``."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_tasks import states
from django_tasks.conf import get_result_store
from django_tasks.exceptions import NotRegistered
from django_tasks.registry import registry
from django_tasks.result import result_to_exception


class Command(BaseCommand):
    help = "Print the stored state and result of a task, by its id."

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        # Celery's --traceback prints the task's traceback; Django's own --traceback (raise
        # CommandError with a Python traceback) gives way to it here.
        kwargs.setdefault("conflict_handler", "resolve")
        return super().create_parser(prog_name, subcommand, **kwargs)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("task_id", help="the id of the task (AsyncResult.id)")
        parser.add_argument("-t", "--task", default=None, metavar="NAME",
                            help="the task's name (as in `celery result -t`): it must be "
                                 "registered here, and the id one of its runs")
        parser.add_argument("--traceback", action="store_true", dest="show_traceback",
                            help="also print the traceback of a failed task")
        parser.set_defaults(traceback=False)  # read by Django when a CommandError is raised

    def handle(self, *args: Any, **options: Any) -> None:
        store = get_result_store()
        if store is None:
            raise CommandError("TASKS_RESULT_BACKEND is None: no results are stored.")
        task_id, name = options["task_id"], options["task"]
        if name is not None:
            try:
                registry.get(name)
            except NotRegistered as exc:
                raise CommandError(f"-t: {exc}") from None
        meta = store.get(task_id)
        if meta is None:
            raise CommandError(f"No result is stored for task id {task_id!r}: it was never "
                               "sent here, or it expired and was pruned.")
        if name is not None and meta.task_name and meta.task_name != name:
            raise CommandError(f"Task id {task_id!r} is a run of {meta.task_name!r}, not of "
                               f"{name!r}: check the id, or leave out -t.")
        done = meta.date_done.isoformat(sep=" ", timespec="seconds") if meta.date_done else "-"
        for label, value in [("task", meta.task_name or name or "?"), ("id", meta.task_id),
                             ("state", meta.state), ("queue", meta.queue or "-"),
                             ("worker", meta.worker or "-"), ("retries", meta.retries),
                             ("done", done), ("result", _shown(meta.state, meta.result))]:
            self.stdout.write(f"{label + ':':<9}{value}")
        if options["show_traceback"]:
            self.stdout.write("traceback:")
            self.stdout.write(meta.traceback or "(none stored)")


def _shown(state: str, value: Any) -> str:
    if value is None:
        return "-"
    if state in states.EXCEPTION_STATES:
        return repr(result_to_exception(value))
    # JSON, with the types it has no literal for (bytes, datetime, Decimal...) as Python
    # shows them, so b"1" and "1" or Decimal("1.5") and "1.5" are told apart.
    return json.dumps(value, indent=2, ensure_ascii=False, default=repr)
