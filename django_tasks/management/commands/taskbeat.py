"""``manage.py taskbeat``: run the scheduler (see ``django_tasks.beat.main.Beat``)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_tasks.beat.main import Beat
from django_tasks.exceptions import BrokerUnreachable, ConfigurationError, WorkerNameInUse
from django_tasks.management.options import check_common
from django_tasks.process.stall import EXIT_STALLED


class Command(BaseCommand):
    help = ("Run the django_tasks scheduler: queue periodic tasks from the database (and "
            "TASKS_BEAT_SCHEDULE) on time, exactly once, however many beats run.")
    requires_system_checks = "__all__"

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("-l", "--loglevel", default="INFO",
                            help="DEBUG, INFO, WARNING, ERROR or CRITICAL")
        parser.add_argument("-n", "--hostname", default="",
                            help="this beat's name, unique among running workers and beats; "
                                 "%%h, %%n, %%d expand as for taskworker (default: "
                                 "beat<pid>@%%h)")
        parser.add_argument("--tick", type=float, default=None, metavar="SECONDS",
                            help="seconds between looks at what is due (default: "
                                 "TASKS_BEAT_TICK_SECONDS, 1)")
        parser.add_argument("--stall-timeout", type=float, default=None, metavar="SECONDS",
                            help="exit with status 4 when no tick has completed for this "
                                 "long (default: TASKS_WORKER_STALL_TIMEOUT, 120)")
        parser.add_argument("--health-file", default=None, metavar="PATH",
                            help="keep this file up to date for `python -m "
                                 "django_tasks.probe PATH`")

    def handle(self, *args: Any, **options: Any) -> None:
        check_common(options)  # before the beat starts, which would find out too late
        extra = {k: options[k] for k in ("tick", "stall_timeout", "health_file")
                 if options[k] is not None}
        try:
            beat = Beat(hostname=options["hostname"], loglevel=options["loglevel"],
                        out=self.stdout, **extra)  # type: ignore[arg-type]
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        try:
            code = beat.run()
        except (WorkerNameInUse, ConfigurationError) as exc:
            raise CommandError(str(exc)) from exc
        except BrokerUnreachable as exc:
            self.stderr.write(f"CommandError: {exc}")
            raise SystemExit(EXIT_STALLED) from exc
        if code:
            raise SystemExit(code)
