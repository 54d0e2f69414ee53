"""Printing control replies for ``taskinspect`` and ``taskcontrol``: one block per worker,
or JSON; and their exit status."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .channel import Reply

#: No worker answered (``EX_UNAVAILABLE``, as ``celery inspect`` exits).
NONE_ANSWERED = 69
#: Every worker that answered refused the command.
ALL_REFUSED = 1


def parse_destination(values: Sequence[str] | None) -> list[str]:
    """``--destination a,b --destination c`` -> ``[a, b, c]``."""
    return [name.strip() for value in values or [] for name in value.split(",")
            if name.strip()]


def timeout_error(value: float) -> str:
    if not value > 0 or value > 3600:
        return f"--timeout must be a number of seconds above 0 and at most 3600, not {value:g}"
    return ""


def write(out: Any, command: str, replies: Sequence[Reply], *, as_json: bool) -> None:
    if as_json:
        out.write(json.dumps({r.hostname: r.body for r in replies}, indent=2, default=str)
                  + "\n")
        return
    for reply in replies:
        if not reply.ok:
            out.write(f"-> {reply.hostname}: ERROR\n    {reply.body['error']}\n")
            continue
        out.write(f"-> {reply.hostname}: OK\n")
        for line in _lines(command, reply.body.get("ok")):
            out.write(f"    {line}\n")
    count = len(replies)
    out.write(f"\n{count} node{'' if count == 1 else 's'} online.\n")


def report(out: Any, err: Any, command: str, replies: Sequence[Reply], *,
           destination: Sequence[str], timeout: float, as_json: bool) -> None:
    """Write the replies, say so when none came, and exit with ``exit_status``."""
    write(out, command, replies, as_json=as_json)
    if not replies and not as_json:
        err.write("Error: no worker answered"
                  + (f" ({', '.join(destination)})" if destination else "")
                  + f" within {timeout:g}s.")
    status = exit_status(replies)
    if status:
        raise SystemExit(status)


def exit_status(replies: Sequence[Reply]) -> int:
    if not replies:
        return NONE_ANSWERED
    return 0 if any(r.ok for r in replies) else ALL_REFUSED


def _lines(command: str, value: Any) -> list[str]:
    if command in ("active", "reserved"):
        if not value:
            return ["- empty -"]
        return [f"* {t.get('name') or '?'}[{t['id']}] args={t['args']} kwargs={t['kwargs']}"
                + (f" started={t['started']} ({t['runtime']:.1f}s)" if "started" in t else "")
                + f" pid={t['worker_pid']}" for t in value]
    if command == "scheduled":
        return ["- empty -", f"({value['note']})"]
    if command == "registered":
        return [f"* {name}" for name in value] or ["- empty -"]
    if command == "active_queues":
        return [f"* {queue['name']}" for queue in value]
    if command == "stats":
        return json.dumps(value, indent=2, default=str).splitlines()
    if command == "revoke":
        done = value.get("terminated") or []
        return [f"terminated {task_id}" for task_id in done] or ["not running here"]
    return [str(value)]
