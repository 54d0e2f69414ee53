"""What a worker's supervisor answers to each control command.

Each handler takes the pool and the request's arguments and returns the reply's ``ok``
value, or raises :class:`ControlError` (the reply is then ``{"error": ...}``). The commands
are an allow-list: nothing here runs code a request names.
"""

from __future__ import annotations

import datetime as dt
import os
import resource
import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import signals
from ..message import name_error

if TYPE_CHECKING:
    from ..worker.slots import Running
    from ..worker.supervisor import Pool

Handler = Callable[["Pool", dict[str, Any]], Any]
HANDLERS: dict[str, Handler] = {}
SIGNALS = {"SIGTERM": signal.SIGTERM, "SIGKILL": signal.SIGKILL}
SCHEDULED_NOTE = ("messages with an eta or countdown are kept by the broker until they are "
                  "due, not by a worker: no worker holds any")


class ControlError(Exception):
    """A request this worker refuses; the message is the reply's ``error``."""


def command(name: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        HANDLERS[name] = handler
        return handler
    return register


def _iso(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).isoformat()


_UNKNOWN = ("", "?", "?")


def _stored(task_ids: list[str]) -> dict[str, tuple[str, str, str]]:
    """Name, args and kwargs as the result rows show them (masked for sensitive tasks), by
    id; nothing without the database result store."""
    from ..conf import get_result_store

    rows = getattr(get_result_store(), "_rows", None)
    if rows is None or not task_ids:
        return {}
    return {task_id: (name, args, kwargs) for task_id, name, args, kwargs in
            rows.filter(task_id__in=task_ids).values_list("task_id", "task_name", "args",
                                                          "kwargs")}


@command("ping")
def ping(pool: Pool, arguments: dict[str, Any]) -> Any:
    return "pong"


@command("active")
def active(pool: Pool, arguments: dict[str, Any]) -> Any:
    found: list[tuple[Running, int]] = []
    for slot, pid in pool.consumer_slots():
        running = slot.get()
        if running is not None:
            found.append((running, pid))
    stored = _stored([r.task_id for r, _ in found])
    now = time.time()
    return [{"id": r.task_id, "name": r.task_name, "queue": r.queue,
             "args": stored.get(r.task_id, _UNKNOWN)[1],
             "kwargs": stored.get(r.task_id, _UNKNOWN)[2],
             "started": _iso(r.started), "runtime": round(now - r.started, 3),
             "deliveries": r.deliveries, "worker_pid": pid} for r, pid in found]


@command("reserved")
def reserved(pool: Pool, arguments: dict[str, Any]) -> Any:
    held = [(task_id, pid) for slot, pid in pool.consumer_slots() for task_id in slot.reserved()]
    stored = _stored([task_id for task_id, _ in held])
    return [{"id": task_id, "name": stored.get(task_id, _UNKNOWN)[0],
             "args": stored.get(task_id, _UNKNOWN)[1],
             "kwargs": stored.get(task_id, _UNKNOWN)[2], "worker_pid": pid}
            for task_id, pid in held]


@command("scheduled")
def scheduled(pool: Pool, arguments: dict[str, Any]) -> Any:
    return {"tasks": [], "note": SCHEDULED_NOTE}


def _memory_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    except (OSError, ValueError, IndexError):
        return None


@command("stats")
def stats(pool: Pool, arguments: dict[str, Any]) -> Any:
    worker = pool.worker
    slots = pool.consumer_slots()
    done, failed = pool.totals()
    own, children = (resource.getrusage(resource.RUSAGE_SELF),
                     resource.getrusage(resource.RUSAGE_CHILDREN))
    pids = sorted({pid for _, pid in slots})
    return {
        "hostname": worker.hostname, "pid": os.getpid(), "pool": worker.pool,
        "concurrency": len(slots), "processes": pids, "queues": list(worker.queues),
        "prefetch": worker.prefetch, "uptime": round(time.time() - pool.started_at, 1),
        "total": {"done": done, "failed": failed},
        "rusage": {"utime": own.ru_utime, "stime": own.ru_stime, "maxrss_kib": own.ru_maxrss,
                   "children_utime": children.ru_utime, "children_stime": children.ru_stime},
        "memory_kib": {str(pid): _memory_kib(pid) for pid in sorted({os.getpid(), *pids})},
    }


@command("registered")
def registered(pool: Pool, arguments: dict[str, Any]) -> Any:
    from ..registry import registry

    return sorted(registry)


@command("active_queues")
def active_queues(pool: Pool, arguments: dict[str, Any]) -> Any:
    return [{"name": queue} for queue in pool.worker.queues]


@command("revoke")
def revoke(pool: Pool, arguments: dict[str, Any]) -> Any:
    """Terminate the listed tasks where they run here (the revoke itself is durable: the
    sender marked them REVOKED in the result store first)."""
    ids = arguments.get("task_ids")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise ControlError("revoke needs task_ids, a list of task ids")
    if not arguments.get("terminate"):
        return {"terminated": []}
    name = str(arguments.get("signal") or "SIGTERM").upper()
    if name not in SIGNALS:
        raise ControlError(f"signal {name!r} is not one of {', '.join(SIGNALS)}")
    terminated = []
    for task_id in ids:
        running = pool.terminate(task_id, SIGNALS[name])
        if running is None:
            continue
        terminated.append(task_id)
        _announce(running, SIGNALS[name])
    return {"terminated": terminated}


def _announce(running: Running, signum: int) -> None:
    """``task_revoked`` with ``terminated=True``, sent where Celery sends it: in the
    process that received the revoke."""
    from ..registry import registry
    from ..request import Request

    task = registry.get(running.task_name) if running.task_name in registry else None
    request = Request(id=running.task_id, task=running.task_name)
    signals.send(signals.task_revoked, task, request=request, terminated=True,
                 signum=signum, expired=False)


@command("rate_limit")
def rate_limit(pool: Pool, arguments: dict[str, Any]) -> Any:
    from ..ratelimit import rate_error
    from ..registry import registry

    name, rate = arguments.get("task"), arguments.get("rate")
    if not isinstance(name, str) or name not in registry:
        raise ControlError(f"unknown task {name!r}")
    if problem := rate_error(rate):
        raise ControlError(problem)
    registry.get(name).rate_limit = rate
    pool.reconfigure()
    return f"rate limit of {name} set to {rate}"


def _queue(arguments: dict[str, Any]) -> str:
    queue = arguments.get("queue")
    if not isinstance(queue, str) or (problem := name_error(queue, "queue")):
        raise ControlError(problem if isinstance(queue, str) else "a queue name is needed")
    return queue


@command("add_consumer")
def add_consumer(pool: Pool, arguments: dict[str, Any]) -> Any:
    queue = _queue(arguments)
    if queue in pool.worker.queues:
        return f"already consuming from {queue}"
    pool.worker.queues = [*pool.worker.queues, queue]
    pool.reconfigure()
    return f"now consuming from {queue}"


@command("cancel_consumer")
def cancel_consumer(pool: Pool, arguments: dict[str, Any]) -> Any:
    queue = _queue(arguments)
    if queue not in pool.worker.queues:
        raise ControlError(f"not consuming from {queue}")
    if len(pool.worker.queues) == 1:
        raise ControlError(f"{queue} is the only queue consumed here; add another first")
    pool.worker.queues = [q for q in pool.worker.queues if q != queue]
    pool.reconfigure()
    return f"no longer consuming from {queue}"


def _count(arguments: dict[str, Any]) -> int:
    n = arguments.get("n", 1)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ControlError(f"n must be a whole number of at least 1, not {n!r}")
    return n


@command("pool_grow")
def pool_grow(pool: Pool, arguments: dict[str, Any]) -> Any:
    try:
        size = pool.resize(_count(arguments))
    except ValueError as exc:
        raise ControlError(str(exc)) from None
    return f"pool is now {size}"


@command("pool_shrink")
def pool_shrink(pool: Pool, arguments: dict[str, Any]) -> Any:
    try:
        size = pool.resize(-_count(arguments))
    except ValueError as exc:
        raise ControlError(str(exc)) from None
    return f"pool is now {size}"


@command("shutdown")
def shutdown(pool: Pool, arguments: dict[str, Any]) -> Any:
    pool.after_reply = lambda: os.kill(os.getpid(), signal.SIGTERM)  # a warm shutdown
    return "shutting down"
