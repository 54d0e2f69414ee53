"""Liveness and readiness of a worker, read from its health file without importing Django.

    python -m django_tasks.probe /run/taskworker.health            # alive?
    python -m django_tasks.probe /run/taskworker.health --ready    # and reaching the broker?

A worker started with ``--health-file PATH`` rewrites that file every second from a thread
that never touches the database. Alive: the file is fresh and its process exists. Ready: also,
the last successful heartbeat and every idle pool process's last poll of the broker are recent.
Exit status 0 when the check passes, 1 (with the reason on standard error) when it does not.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any


def check(path: str, *, ready: bool = False, max_age: float = 10.0,
          max_lag: float = 30.0, now: float | None = None) -> tuple[bool, str]:
    """``(passed, explanation)`` for the health file at ``path``."""
    now = time.time() if now is None else now
    try:
        with open(path, encoding="utf-8") as fh:
            state: dict[str, Any] = json.load(fh)
        written, pid = float(state["written"]), int(state["pid"])
        heartbeat_age, poll_age = float(state["heartbeat_age"]), float(state["poll_age"])
    except FileNotFoundError:
        return False, f"no health file at {path}: the worker is not running (or not started " \
                      "with --health-file)"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return False, f"unreadable health file {path}: {exc}"
    who = f"worker {state.get('hostname') or '?'} (pid {pid})"
    age = now - written
    if age > max_age:
        return False, f"{who} has not updated {path} for {age:.0f}s (more than {max_age:g}s)"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False, f"{who} is not running"
    except PermissionError:
        pass  # it exists, as another user
    if ready:
        lag = max(age, 0.0)
        if heartbeat_age + lag > max_lag:
            return False, (f"{who} is alive but its heartbeat has not reached the database "
                           f"for {heartbeat_age + lag:.0f}s")
        if poll_age + lag > max_lag:
            return False, (f"{who} is alive but a pool process has not polled the broker "
                           f"for {poll_age + lag:.0f}s")
        return True, f"{who} is ready: {state.get('running', 0)} task(s) running"
    return True, f"{who} is alive"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m django_tasks.probe",
                                     description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("path", help="the worker's --health-file")
    parser.add_argument("--ready", action="store_true",
                        help="also require the heartbeat and the polls to be recent")
    parser.add_argument("--max-age", type=float, default=10.0,
                        help="seconds the file may go unwritten (default 10)")
    parser.add_argument("--max-lag", type=float, default=30.0,
                        help="with --ready, seconds since the last heartbeat and poll "
                             "(default 30)")
    options = parser.parse_args(argv)
    passed, reason = check(options.path, ready=options.ready, max_age=options.max_age,
                           max_lag=options.max_lag)
    print(reason, file=sys.stdout if passed else sys.stderr)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
