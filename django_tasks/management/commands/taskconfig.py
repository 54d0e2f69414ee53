"""``manage.py taskconfig [--all] [--json]``: the effective ``TASKS_*`` settings, where each
comes from, with secrets censored (Celery's ``app.conf.humanize(censored=True)``)."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from django_tasks.conf import DEFAULTS, mask_url

#: A setting whose name has one of these words is shown as asterisks, as Celery does.
SECRET_NAME = re.compile(r"API|TOKEN|KEY|SECRET|PASS|SIGNATURE|DATABASE", re.IGNORECASE)
CENSORED = "********"


def censored(name: str, value: Any) -> Any:
    """``value`` fit to print: secret names hidden, passwords in URLs masked."""
    if SECRET_NAME.search(name):
        return CENSORED
    if isinstance(value, str) and "://" in value:
        return mask_url(value)
    if isinstance(value, dict):
        return {k: censored(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [censored(name, v) for v in value]
    return value


def plain(value: Any) -> Any:
    """JSON-ready: timedeltas as seconds, other odd values as their repr."""
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return repr(value)


class Command(BaseCommand):
    help = ("Print the TASKS_* settings in effect: those the project sets, or with --all every "
            "one with its default; secrets censored.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--all", action="store_true",
                            help="also the settings left at their default")
        parser.add_argument("--json", action="store_true", help="print JSON for scripts")

    def handle(self, *args: Any, **options: Any) -> None:
        rows = []
        for name in sorted(DEFAULTS):
            full = f"TASKS_{name}"
            is_set = hasattr(settings, full)
            if not (is_set or options["all"]):
                continue
            value = getattr(settings, full) if is_set else DEFAULTS[name]
            rows.append((full, "setting" if is_set else "default", censored(full, value)))
        if options["json"]:
            self.stdout.write(json.dumps({name: {"value": plain(value), "source": source}
                                          for name, source, value in rows}, indent=2))
            return
        if not rows:
            self.stdout.write("No TASKS_* setting is set; --all shows the defaults in effect.")
            return
        width = max(len(name) for name, _, _ in rows)
        for name, source, value in rows:
            self.stdout.write(f"{name:<{width}}  {plain(value)!r}  ({source})")
