"""Executing the running program again, in place."""

from __future__ import annotations

import logging
import os
import sys


def restart_in_place() -> None:
    """Run this same program again in this process (same pid, same arguments): how the
    ``threads`` and ``solo`` pools replace themselves after ``--max-*-per-child``."""
    from django.db import connections

    connections.close_all()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])
