"""``AsyncResult``: a handle on one task's outcome, with Celery's API."""

from __future__ import annotations

import builtins
import datetime as dt
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import states
from .conf import get_result_store
from .exceptions import RemoteTaskError, ResultBackendDisabled, TaskRevokedError
from .exceptions import TimeoutError as TaskTimeoutError

if TYPE_CHECKING:
    from .results.base import ResultStore


@dataclass(frozen=True, slots=True)
class ResultMeta:
    """What the result store knows about one task id."""

    task_id: str
    state: str
    result: Any = None
    traceback: str | None = None
    task_name: str | None = None
    date_done: dt.datetime | None = None
    queue: str | None = None
    worker: str | None = None
    retries: int = 0
    #: A workflow's ids (``canvas/``): its first task, the task that queued this one,
    #: its group.
    root_id: str | None = None
    parent_id: str | None = None
    group_id: str | None = None


def exception_to_result(exc: BaseException) -> dict[str, Any]:
    from .serialization import storable_text

    cls = type(exc)
    try:
        text = str(exc)
    except Exception as error:  # noqa: BLE001 - a broken __str__ must not lose the failure
        text = f"<the exception's str() raised {type(error).__name__}>"
    stored: dict[str, Any] = {"exc_type": cls.__qualname__, "exc_module": cls.__module__,
                              "exc_message": storable_text(text)}
    try:  # the constructor's arguments, where JSON carries them, rebuild it exactly
        from . import serialization

        serialization.dumps(list(exc.args))
        stored["exc_args"] = list(exc.args)
    except (TypeError, ValueError):
        pass
    return stored


def result_to_exception(value: Any) -> BaseException:
    """Rebuild the task's exception with its own type where this process knows the type."""
    if not isinstance(value, dict) or "exc_type" not in value:
        return RemoteTaskError(repr(value))
    name, module = str(value["exc_type"]), str(value.get("exc_module") or "builtins")
    message = str(value.get("exc_message", ""))
    # Only types of modules already imported: a stored result never causes an import.
    owner: Any = builtins if module == "builtins" else sys.modules.get(module)
    cls: Any = owner
    for part in name.split("."):  # nested classes: "User.DoesNotExist"
        cls = getattr(cls, part, None) if cls is not None else None
    if isinstance(cls, type) and issubclass(cls, BaseException):
        args = value.get("exc_args")
        for attempt in ((args if isinstance(args, list) else None), [message]):
            if attempt is None:
                continue
            try:
                return cls(*attempt)
            except Exception:  # noqa: BLE001 - constructors with other signatures
                continue
    remote = type(name, (RemoteTaskError,), {"__module__": module})
    return remote(message)


#: A result asked for sooner than this after this process published its task is hardly ever
#: ready (a worker's answer takes several round trips): ``get()`` listens for it with its
#: first look. When it is ready after all, the ``UNLISTEN`` costs a round trip of its own.
FRESH_SECONDS = 0.001


class AsyncResult:
    """The outcome of a task, looked up by id in the result store.

    ``state`` is PENDING until the store knows more: PENDING also means "unknown id".
    """

    def __init__(self, id: str, task_name: str | None = None, *,
                 parent: AsyncResult | None = None,
                 published_at: float | None = None) -> None:
        self.id = str(id)
        self.task_name = task_name
        self._cache: ResultMeta | None = None
        #: Known when the caller made the workflow (a chain's previous task); else read
        #: from the store.
        self._parent = parent
        #: ``time.monotonic()`` when this process published the task (``delay()``).
        self._published_at = published_at

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.id}>"

    def __str__(self) -> str:
        """The task id, as in Celery: ``f"queued {result}"`` shows it."""
        return self.id

    @property
    def task_id(self) -> str:
        """Celery's other name for ``id``."""
        return self.id

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AsyncResult) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    @property
    def backend(self) -> ResultStore:
        store = get_result_store()
        if store is None:
            raise ResultBackendDisabled(
                "No result backend is configured (TASKS_RESULT_BACKEND is None), so results "
                "cannot be read. Set TASKS_RESULT_BACKEND = 'django://' to store them."
            )
        return store

    def _meta(self) -> ResultMeta:
        if self._cache is not None:
            return self._cache
        meta = self.backend.get(self.id) or ResultMeta(self.id, states.PENDING)
        if meta.state in states.READY_STATES:
            self._cache = meta
        return meta

    @property
    def state(self) -> str:
        return self._meta().state

    status = state

    @property
    def result(self) -> Any:
        """The return value, or the exception instance for FAILURE/REVOKED/RETRY."""
        meta = self._meta()
        if meta.state in states.EXCEPTION_STATES and meta.result is not None:
            return result_to_exception(meta.result)
        return meta.result

    info = result

    @property
    def traceback(self) -> str | None:
        return self._meta().traceback

    @property
    def date_done(self) -> dt.datetime | None:
        return self._meta().date_done

    @property
    def name(self) -> str | None:
        return self.task_name or self._meta().task_name

    @property
    def retries(self) -> int:
        """How many times the task was retried (``self.retry()``, ``autoretry_for``)."""
        return self._meta().retries

    @property
    def worker(self) -> str | None:
        """The name of the worker that last ran it, once one has."""
        return self._meta().worker or None

    @property
    def queue(self) -> str | None:
        return self._meta().queue or None

    @property
    def parent(self) -> AsyncResult | None:
        """The result of the task whose outcome queued this one (a chain's previous task,
        the task a ``link`` callback was attached to), or None."""
        if self._parent is not None:
            return self._parent
        meta = self.backend.get(self.id)
        return AsyncResult(meta.parent_id) if meta is not None and meta.parent_id else None

    @property
    def children(self) -> list[AsyncResult]:
        """The results of the tasks this task's outcome queued (its callbacks, the next
        task of its chain), oldest first."""
        from .results.workflows import workflows

        return [AsyncResult(i) for i in workflows(self.backend).children(self.id)]

    def ready(self) -> bool:
        return self.state in states.READY_STATES

    def successful(self) -> bool:
        return self.state == states.SUCCESS

    def failed(self) -> bool:
        return self.state == states.FAILURE

    def exists(self) -> bool:
        """True when the store has a row for this id (queued, running or done)."""
        return self._cache is not None or self.backend.get(self.id) is not None

    def forget(self) -> None:
        """Delete the stored result."""
        self.backend.forget(self.id)
        self._cache = None

    def revoke(self, connection: Any = None, terminate: bool = False,
               signal: str | None = None, wait: bool = False,
               timeout: float | None = None) -> bool:
        """Mark the task REVOKED so no worker runs it; False if it already finished.

        With ``terminate=True`` a worker running it stops it too (``signal``: ``"SIGTERM"``,
        the default, or ``"SIGKILL"``), through the control channel; ``wait`` waits up to
        ``timeout`` seconds for the workers' replies. ``connection`` is Celery's, unused."""
        self._cache = None
        revoked = bool(self.backend.revoke(self.id))
        if revoked and terminate:
            from .control.channel import DEFAULT_TIMEOUT, broadcast

            broadcast("revoke", {"task_ids": [self.id], "terminate": True,
                                 "signal": signal or "SIGTERM"},
                      reply=wait, timeout=DEFAULT_TIMEOUT if timeout is None else timeout)
        return revoked

    def get(self, timeout: float | None = None, interval: float = 0.5,
            propagate: bool = True) -> Any:
        """Wait for the task to finish and return its value.

        Where the store can wake readers (the database store on PostgreSQL, outside a
        transaction), it waits for the worker's notification and reads again, at least every
        ``interval`` seconds; elsewhere it polls, starting at a few milliseconds and backing off
        up to ``interval``. With ``propagate``, a failed task's exception is raised here with
        its own type.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = min(0.002, interval)
        store = self.backend
        try:
            if self._published_at is not None \
                    and time.monotonic() - self._published_at < FRESH_SECONDS:
                # Asked for at once after its publish: no worker is likely to have answered
                # yet, so the first look listens already (its LISTEN rides on the read),
                # rather than a look of its own first (a round trip less before the wait).
                store.wait(0.0, (self.id,))
            self._published_at = None
            while True:
                meta = self._meta()
                if meta.state in states.READY_STATES:
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    raise TaskTimeoutError(
                        f"Task {self.id} was not ready after {timeout} s (state {meta.state})."
                    )
                left = interval if deadline is None else max(0.0, deadline - time.monotonic())
                if store.wait(min(interval, left), (self.id,)) is None:
                    time.sleep(min(delay, left))
                    delay = min(delay * 1.5, interval)
        finally:
            store.stop_waiting()
        return self._value(meta, propagate)

    wait = get

    async def aget(self, timeout: float | None = None, interval: float = 0.5,
                   propagate: bool = True) -> Any:
        """``get()`` for async code: awaits between looks instead of blocking the loop."""
        import asyncio

        from asgiref.sync import sync_to_async

        deadline = None if timeout is None else time.monotonic() + timeout
        delay = min(0.002, interval)
        while True:
            meta = await sync_to_async(self._meta)()
            if meta.state in states.READY_STATES:
                return await sync_to_async(self._value)(meta, propagate)
            if deadline is not None and time.monotonic() >= deadline:
                raise TaskTimeoutError(
                    f"Task {self.id} was not ready after {timeout} s (state {meta.state})."
                )
            pause = delay if deadline is None else min(delay, max(0.0, deadline - time.monotonic()))
            await asyncio.sleep(pause)
            delay = min(delay * 1.5, interval)

    def _value(self, meta: ResultMeta, propagate: bool) -> Any:
        if meta.state == states.SUCCESS:
            return meta.result
        if propagate:
            if meta.state == states.REVOKED and meta.result is None:
                raise TaskRevokedError(f"Task {self.id} was revoked.")
            raise result_to_exception(meta.result)
        return self.result


class EagerResult(AsyncResult):
    """The outcome of a task run inline (``TASKS_ALWAYS_EAGER`` or ``Task.apply()``).

    It holds the outcome itself, so it is read without a result store (with
    ``TASKS_RESULT_BACKEND = None`` or ``ignore_result=True`` too), as Celery's is."""

    _cache: ResultMeta

    def __init__(self, meta: ResultMeta) -> None:
        super().__init__(meta.task_id, meta.task_name)
        self._cache = meta

    def get(self, timeout: float | None = None, interval: float = 0.5,
            propagate: bool = True) -> Any:
        """The value at once (the task has run); a failure is raised with ``propagate``."""
        return self._value(self._cache, propagate)

    wait = get

    def revoke(self, connection: Any = None, terminate: bool = False,
               signal: str | None = None, wait: bool = False,
               timeout: float | None = None) -> bool:
        """False: the task has already run."""
        return False

    def forget(self) -> None:
        store = get_result_store()
        if store is not None:
            store.forget(self.id)

    def exists(self) -> bool:
        return True


@dataclass(slots=True)
class TaskOutcome:
    """A finished (or retrying) run, as the worker hands it to the result store."""

    task_id: str
    task_name: str
    state: str
    result: Any = None
    traceback: str | None = None
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] | None = None
    queue: str = ""
    worker: str = ""
    attempts: int = 1
    retries: int = 0
    started_at: dt.datetime | None = None
    date_done: dt.datetime | None = None
    exception: BaseException | None = None
    root_id: str | None = None
    parent_id: str | None = None
    group_id: str | None = None

    def meta(self) -> ResultMeta:
        return ResultMeta(self.task_id, self.state, self.result, self.traceback,
                          self.task_name, self.date_done, self.queue, self.worker, self.retries,
                          self.root_id, self.parent_id, self.group_id)
