"""``manage.py taskworker``: run a worker (see ``django_tasks.worker.Worker``)."""

from __future__ import annotations

import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_tasks.conf import task_settings
from django_tasks.exceptions import BrokerUnreachable, ConfigurationError, WorkerNameInUse
from django_tasks.management.options import check_common
from django_tasks.process.stall import EXIT_STALLED
from django_tasks.worker import Worker


class Command(BaseCommand):
    help = "Run a django_tasks worker: fetch tasks from the broker, run them, record results."
    requires_system_checks = "__all__"

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("-c", "--concurrency", type=int, default=None,
                            help="pool processes or threads (default: number of CPUs, "
                                 f"{os.cpu_count()} here)")
        parser.add_argument("-P", "--pool", choices=["prefork", "threads", "solo"],
                            default="prefork", help="how tasks run in parallel")
        parser.add_argument("-Q", "--queues", default=None,
                            help="comma-separated queues to consume (default: the default queue)")
        parser.add_argument("-l", "--loglevel", default="INFO",
                            help="DEBUG, INFO, WARNING, ERROR or CRITICAL")
        parser.add_argument("-n", "--hostname", default="",
                            help="this worker's name, unique among running workers; %%h, "
                                 "%%n, %%d expand to the host name, its first label, the "
                                 "domain (default: worker<pid>@%%h)")
        parser.add_argument("--prefetch", type=int, default=None,
                            help="most messages one process holds at once")
        parser.add_argument("--shutdown-timeout", type=float, default=None,
                            help="seconds running tasks get to finish after SIGTERM")
        parser.add_argument("--stall-timeout", type=float, default=None, metavar="SECONDS",
                            help="exit with status 4 when the broker has not been reached "
                                 "for this long (default: TASKS_WORKER_STALL_TIMEOUT, 120)")
        parser.add_argument("--health-file", default=None, metavar="PATH",
                            help="keep this file up to date for `python -m "
                                 "django_tasks.probe PATH`")
        parser.add_argument("-B", "--beat", action="store_true",
                            help="also run the scheduler (taskbeat) in this worker; safe on "
                                 "any number of workers: each run is queued once")
        parser.add_argument("--max-tasks-per-child", type=int, default=None,
                            help="replace a pool process after this many tasks")
        parser.add_argument("--max-memory-per-child", type=int, default=None, metavar="KIB",
                            help="replace a pool process once a task leaves it using more "
                                 "resident memory than this, in KiB")

    def handle(self, *args: Any, **options: Any) -> None:
        check_common(options)  # before the worker starts, which would find out too late
        queues = (options["queues"] or str(task_settings.DEFAULT_QUEUE)).split(",")
        optional = ("concurrency", "prefetch", "shutdown_timeout", "stall_timeout",
                    "health_file", "max_tasks_per_child", "max_memory_per_child")
        extra = {k: options[k] for k in optional if options[k] is not None}
        try:
            worker = Worker(queues=queues, pool=options["pool"], hostname=options["hostname"],
                            beat=options["beat"],
                            loglevel=options["loglevel"], out=self.stdout,  # type: ignore[arg-type]
                            **extra)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        try:
            code = worker.run()
        except (WorkerNameInUse, ConfigurationError) as exc:
            raise CommandError(str(exc)) from exc
        except BrokerUnreachable as exc:  # one line, and the status of a stalled worker
            self.stderr.write(f"CommandError: {exc}")
            raise SystemExit(EXIT_STALLED) from exc
        if code:
            raise SystemExit(code)

