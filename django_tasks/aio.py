"""Running ``async def`` tasks, the way Django runs async code from sync code.

A coroutine task is driven by ``asgiref``'s ``async_to_sync``: its event loop runs in a
helper thread while the worker's thread waits and serves the task's thread-sensitive calls, so
the async ORM (``await Model.objects.aget(...)``) uses the worker thread's database connection,
which the worker checks between tasks as it does for sync tasks. Each run gets a fresh loop.

Time limits are enforced by the loop itself: at the soft limit the coroutine is cancelled (it
sees ``asyncio.CancelledError`` at the ``await`` it is in, and may clean up, or even return a
value); at the hard limit it is cancelled again. If it then ends by cancellation, the run ends
with ``SoftTimeLimitExceeded`` or ``TimeLimitExceeded``. A coroutine that blocks its loop
(sync code that never awaits) cannot be cancelled: prefork's supervisor still kills it at the
hard limit, and the other pools treat it as a task that cannot be stopped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from .exceptions import SoftTimeLimitExceeded, TimeLimitExceeded


def run(coro: Coroutine[Any, Any, Any], label: str, soft: float | None = None,
        hard: float | None = None) -> Any:
    """Run ``coro`` to completion within its limits and return its value."""
    from asgiref.sync import async_to_sync

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        coro.close()
        raise RuntimeError(
            f"Task {label} is async and cannot run inline inside a running event loop: in "
            "async code, queue it with 'await task.adelay(...)', or await the function "
            "itself with 'await task(...)'.")
    return async_to_sync(_within_limits)(coro, label, soft, hard)


async def _within_limits(coro: Coroutine[Any, Any, Any], label: str, soft: float | None,
                         hard: float | None) -> Any:
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    fired: list[BaseException] = []

    def expire(error: BaseException) -> None:
        fired.append(error)
        task.cancel()

    timers = []
    if soft is not None:
        timers.append(loop.call_later(soft, expire, SoftTimeLimitExceeded.for_task(label, soft)))
    if hard is not None:
        timers.append(loop.call_later(hard, expire, TimeLimitExceeded.for_task(label, hard)))
    try:
        return await coro
    except asyncio.CancelledError:
        if fired:
            raise fired[-1] from None
        raise
    finally:
        for timer in timers:
            timer.cancel()
