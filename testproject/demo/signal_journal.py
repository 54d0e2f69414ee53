"""Receivers of django_tasks' signals that append what they saw, one JSON line each, to the
file named by ``DEMO_SIGNAL_JOURNAL`` (the end-to-end tests read it). Connected in
``DemoConfig.ready()``, so a prefork pool process has them from its parent."""

from __future__ import annotations

import json
import os
from typing import Any

from django_tasks import signals

NAMES = ("task_received", "task_prerun", "task_success", "task_failure", "task_retry",
         "task_postrun", "task_revoked", "worker_ready", "worker_process_init",
         "worker_shutdown")


def _plain(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value


def _receiver(name: str) -> Any:
    def receive(sender: Any, **kwargs: Any) -> None:
        path = os.environ.get("DEMO_SIGNAL_JOURNAL")
        if not path:
            return
        kwargs.pop("signal", None)
        entry = {"signal": name, "pid": os.getpid(),
                 "sender": getattr(sender, "name", type(sender).__name__),
                 "arguments": sorted(kwargs)}
        for key in ("task_id", "retval", "state", "result", "args", "kwargs", "terminated",
                    "signum", "expired"):
            if key in kwargs:
                entry[key] = _plain(kwargs[key])
        if "exception" in kwargs:
            entry["exception"] = type(kwargs["exception"]).__name__
        if "request" in kwargs:
            entry["task_id"] = kwargs["request"].id
        with open(path, "a", encoding="utf-8") as journal:
            journal.write(json.dumps(entry) + "\n")

    return receive


def connect() -> None:
    for name in NAMES:
        getattr(signals, name).connect(_receiver(name), weak=False,
                                       dispatch_uid=f"demo.signal_journal.{name}")
