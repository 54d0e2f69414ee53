"""Checks of the options ``taskworker`` and ``taskbeat`` share, made before anything starts:
a bad value is a one-line ``CommandError`` saying what to fix, not a traceback later."""

from __future__ import annotations

import os
from typing import Any

from django.core.management.base import CommandError

from django_tasks.process.logs import parse_level


def check_common(options: dict[str, Any]) -> None:
    """``--loglevel`` and ``--health-file``."""
    try:
        parse_level(options["loglevel"])
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    if options.get("health_file") is not None:
        check_health_file(options["health_file"])


def check_health_file(path: str) -> None:
    """The process writes the file next to itself and replaces it: it must name a file in a
    directory that exists."""
    if not path:
        raise CommandError("--health-file needs the path of a file, e.g. /tmp/worker.health.")
    where = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise CommandError(f"--health-file {path!r} is a directory; name a file in it, "
                           f"e.g. {os.path.join(path, 'worker.health')!r}.")
    if not os.path.isdir(where):
        raise CommandError(f"--health-file {path!r}: the directory {where!r} does not exist; "
                           "create it or name a file in another one.")
