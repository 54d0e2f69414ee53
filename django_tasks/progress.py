"""A running task's own states: ``self.update_state(state="PROGRESS", meta={...})``.

The state and its meta are written to the task's result row at once, in one small UPDATE of
their own (not batched behind the outcome, which replaces them when the task ends); a final
state is never replaced. ``AsyncResult.state`` and ``.info`` read them back.

The write runs on the calling thread's database connection, as any query of the task does
(prefork, threads and solo pools alike). Inside an ``async def`` task, where Django refuses
synchronous queries on the event loop's thread, ``update_state()`` hands the write to a
helper thread and waits for it; ``await self.aupdate_state(...)`` runs it on the worker's
thread instead, without blocking the loop.
"""

from __future__ import annotations

import asyncio
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from . import serialization
from .conf import get_result_store
from .message import printable
from .states import MAX_STATE_LENGTH

_helper: tuple[int, ThreadPoolExecutor] | None = None
_helper_lock = threading.Lock()


def check_state(state: object) -> str:
    """``state`` if it can be stored as a task's state; else a ``ValueError`` that says why."""
    if not isinstance(state, str) or not state or len(state) > MAX_STATE_LENGTH \
            or not state.isprintable():
        raise ValueError(
            f"update_state(state={printable(repr(state))}): a state is a name of 1 to "
            f"{MAX_STATE_LENGTH} printable characters, such as 'PROGRESS'.")
    return state


def update_state(task_id: str | None, state: object, meta: Any, worker: str = "") -> bool:
    """Store ``state`` and ``meta`` on the row of ``task_id`` now; False when nothing was
    written: no id (a direct call), results are off, the task has no row (``ignore_result``,
    or eager mode), or its row is final already."""
    name = check_state(state)
    stored = serialization.loads(serialization.dumps(meta, f"the meta of state {name}"))
    store = get_result_store()
    if not task_id or store is None:
        return False
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return store.update_state(task_id, name, stored, worker)
    # On an event loop's thread Django refuses synchronous queries: a helper thread writes.
    return _executor().submit(_write_in_helper, task_id, name, stored, worker).result()


def _write_in_helper(task_id: str, state: str, meta: Any, worker: str) -> bool:
    from django.db import close_old_connections

    close_old_connections()  # the helper's own connection, checked as between requests
    store = get_result_store()
    return store is not None and store.update_state(task_id, state, meta, worker)


def _executor() -> ThreadPoolExecutor:
    """One helper thread per process (a forked pool process starts its own)."""
    global _helper
    with _helper_lock:
        if _helper is None or _helper[0] != os.getpid():
            _helper = (os.getpid(), ThreadPoolExecutor(1, thread_name_prefix="update_state"))
        return _helper[1]
