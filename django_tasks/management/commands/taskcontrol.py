"""``manage.py taskcontrol revoke|terminate|rate_limit|add_consumer|cancel_consumer|
pool_grow|pool_shrink|shutdown ...``: tell the running workers to do something, through the
control channel, and print one block per worker that answered (``celery control``)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_tasks.control import output
from django_tasks.control.channel import DEFAULT_TIMEOUT, broadcast
from django_tasks.control.handlers import SIGNALS
from django_tasks.message import name_error
from django_tasks.ratelimit import rate_error

from .taskinspect import common


class Command(BaseCommand):
    help = ("Tell the running workers to revoke or terminate tasks, change a rate limit, "
            "consume from a queue or stop, grow or shrink the pool, or shut down.")

    def add_arguments(self, parser: CommandParser) -> None:
        shared: Any = argparse.ArgumentParser(add_help=False)
        shared.add_argument("--destination", "-d", action="append", metavar="HOSTNAME",
                            help="only these workers (repeat it, or separate names with "
                                 "commas); default: all")
        shared.add_argument("--timeout", "-t", type=float, default=DEFAULT_TIMEOUT,
                            help=f"seconds to wait for replies (default {DEFAULT_TIMEOUT:g})")
        shared.add_argument("--json", action="store_true", help="print JSON for scripts")
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        for name in ("revoke", "terminate"):
            p = sub.add_parser(name, parents=[shared], help=(
                "mark tasks REVOKED (durable); --terminate stops them where they run"
                if name == "revoke" else "revoke tasks and stop them where they run"))
            p.add_argument("task_ids", nargs="+", metavar="TASK_ID")
            if name == "revoke":
                p.add_argument("--terminate", action="store_true",
                               help="stop the task if a worker is running it")
            p.add_argument("--signal", "-s", default="SIGTERM", type=str.upper,
                           choices=list(SIGNALS), help="SIGTERM (default) or SIGKILL")
        p = sub.add_parser("rate_limit", parents=[shared],
                           help="set a task's rate limit on the workers, e.g. 10/m (0: none)")
        p.add_argument("task", metavar="TASK")
        p.add_argument("rate", metavar="RATE")
        for name in ("add_consumer", "cancel_consumer"):
            p = sub.add_parser(name, parents=[shared], help=(
                "start consuming from a queue" if name == "add_consumer"
                else "stop consuming from a queue"))
            p.add_argument("queue", metavar="QUEUE")
        for name in ("pool_grow", "pool_shrink"):
            p = sub.add_parser(name, parents=[shared], help=(
                "add N consumers (default 1)" if name == "pool_grow"
                else "retire N consumers gracefully (default 1)"))
            p.add_argument("n", nargs="?", type=int, default=1, metavar="N")
        sub.add_parser("shutdown", parents=[shared], help="warm shutdown, as SIGTERM")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        destination, timeout = common(options)
        command, arguments = self._request(action, options)
        if command == "revoke" and not arguments["terminate"]:
            return  # stored: every worker skips the task; none needs asking
        replies = broadcast(command, arguments, destination=destination, timeout=timeout)
        output.report(self.stdout, self.stderr, command, replies, destination=destination,
                      timeout=timeout, as_json=options["json"])

    def _request(self, action: str, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        if action in ("revoke", "terminate"):
            terminate = action == "terminate" or options["terminate"]
            self._revoke(options["task_ids"], as_json=options["json"], replies=terminate)
            return "revoke", {"task_ids": options["task_ids"], "terminate": terminate,
                              "signal": options["signal"]}
        if action == "rate_limit":
            if problem := rate_error(options["rate"]):
                raise CommandError(problem)
            return action, {"task": options["task"], "rate": options["rate"]}
        if action in ("add_consumer", "cancel_consumer"):
            if problem := name_error(options["queue"], "QUEUE"):
                raise CommandError(problem)
            return action, {"queue": options["queue"]}
        if action in ("pool_grow", "pool_shrink"):
            if options["n"] < 1:
                raise CommandError(f"N must be at least 1, not {options['n']}")
            return action, {"n": options["n"]}
        return action, {}

    def _revoke(self, task_ids: list[str], *, as_json: bool, replies: bool) -> None:
        """Store the revokes; say what was revoked (on stderr when the workers' replies
        are the JSON that follows)."""
        from django_tasks.result import AsyncResult

        done = {}
        for task_id in task_ids:
            if problem := name_error(task_id, "TASK_ID"):
                raise CommandError(problem)
            done[task_id] = AsyncResult(task_id).revoke()
        if as_json and not replies:
            self.stdout.write(json.dumps({"revoked": [t for t, ok in done.items() if ok],
                                          "finished": [t for t, ok in done.items() if not ok]}))
            return
        out = self.stderr if as_json else self.stdout
        for task_id, ok in done.items():
            out.write(f"{task_id}: revoked" if ok else f"{task_id}: already finished, not revoked")
