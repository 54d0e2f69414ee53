"""``manage.py taskinspect ping|active|reserved|scheduled|stats|registered|queues``: ask the
running workers, through the control channel, and print one block per worker that answered
(``celery inspect``)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_tasks.control import output
from django_tasks.control.channel import DEFAULT_TIMEOUT, broadcast

#: What to ask -> the control command.
QUESTIONS = {"ping": "ping", "active": "active", "reserved": "reserved",
             "scheduled": "scheduled", "stats": "stats", "registered": "registered",
             "queues": "active_queues", "active_queues": "active_queues"}


class Command(BaseCommand):
    help = ("Ask the running workers what they do (ping, active, reserved, scheduled, stats, "
            "registered, queues); exit status 69 when none answers.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("what", choices=list(QUESTIONS), metavar="WHAT",
                            help="ping | active | reserved | scheduled | stats | registered "
                                 "| queues")
        add_common(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        command = QUESTIONS[options["what"]]
        destination, timeout = common(options)
        replies = broadcast(command, destination=destination, timeout=timeout)
        output.report(self.stdout, self.stderr, command, replies, destination=destination,
                      timeout=timeout, as_json=options["json"])


def add_common(parser: Any) -> None:
    parser.add_argument("--destination", "-d", action="append", metavar="HOSTNAME",
                        help="only these workers answer (repeat it, or separate names with "
                             "commas); default: all")
    parser.add_argument("--timeout", "-t", type=float, default=DEFAULT_TIMEOUT,
                        help=f"seconds to wait for replies (default {DEFAULT_TIMEOUT:g})")
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")


def common(options: dict[str, Any]) -> tuple[list[str], float]:
    if problem := output.timeout_error(options["timeout"]):
        raise CommandError(problem)
    return output.parse_destination(options["destination"]), float(options["timeout"])
