"""``manage.py taskcall NAME --args '[...]' --kwargs '{...}'``: queue a task, print its id
(``celery call``)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_tasks.exceptions import ConfigurationError, EncodeError
from django_tasks.registry import registry
from django_tasks.task import send_task


class Command(BaseCommand):
    help = "Queue a task by name with JSON arguments, and print its id."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="the task's registered name, e.g. shop.tasks.send_receipt")
        # Not "args"/"kwargs" as destinations: Django's call_command keeps those names.
        parser.add_argument("--args", "-a", dest="call_args", default="[]",
                            help="positional arguments: a JSON list")
        parser.add_argument("--kwargs", "-k", dest="call_kwargs", default="{}",
                            help="keyword arguments: a JSON object")
        parser.add_argument("--countdown", type=float, help="seconds before it may run")
        parser.add_argument("--eta", help="when it may run: an ISO 8601 time with its zone")
        parser.add_argument("--expires", type=float, help="seconds after which it is dropped")
        parser.add_argument("--queue", help="the queue (default: the task's, or its route's)")
        parser.add_argument("--priority", type=int, help="0 to 9, higher first")
        parser.add_argument("--json", action="store_true", help="print JSON for scripts")

    def handle(self, *args: Any, **options: Any) -> None:
        name = options["name"]
        call_args = _json(options["call_args"], list, "--args",
                          "a JSON list such as '[2, 3]'")
        call_kwargs = _json(options["call_kwargs"], dict, "--kwargs",
                            'a JSON object such as \'{"x": 1}\'')
        extra: dict[str, Any] = {key: options[key] for key in
                                 ("countdown", "expires", "queue", "priority")
                                 if options[key] is not None}
        if options["eta"]:
            extra["eta"] = _eta(options["eta"])
        try:
            if name in registry:
                result = registry.get(name).apply_async(call_args, call_kwargs, **extra)
            else:
                self.stderr.write(f"Note: {name} is not registered in this process; the "
                                  "worker checks it when the task arrives.")
                result = send_task(name, call_args, call_kwargs, **extra)
        except (TypeError, EncodeError, ConfigurationError) as exc:
            raise CommandError(str(exc)) from None
        if options["json"]:
            self.stdout.write(json.dumps({"id": result.id, "task": name}))
        else:
            self.stdout.write(result.id)


def _json(text: str, kind: type, option: str, example: str) -> Any:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise CommandError(f"{option} is not JSON ({exc}); give {example}.") from None
    if not isinstance(value, kind):
        raise CommandError(f"{option} is {type(value).__name__} JSON; give {example}.")
    return value


def _eta(text: str) -> dt.datetime:
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise CommandError(f"--eta {text!r} is not an ISO 8601 time; give e.g. "
                           "2026-12-01T09:30:00+01:00.") from None
    if when.tzinfo is None:
        raise CommandError(f"--eta {text!r} has no time zone; add one, e.g. +00:00.")
    return when
