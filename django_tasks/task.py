"""``@shared_task`` and the ``Task`` object: defining, calling and retrying tasks."""

from __future__ import annotations

import contextvars
import datetime as dt
import functools
import inspect
import random
import sys
import traceback as tb
import uuid
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Generic, ParamSpec, TypeVar, overload

from . import aio, clock, states
from .conf import get_result_store, task_settings, time_limit_error
from .exceptions import (
    ColdShutdown,
    ConfigurationError,
    EncodeError,
    MaxRetriesExceededError,
    Retry,
)
from .message import Message, name_error, printable
from .registry import registry
from .result import AsyncResult, EagerResult, TaskOutcome, exception_to_result

P = ParamSpec("P")
R = TypeVar("R")

MAX_PRIORITY = 9


@dataclass
class Request:
    """What a bound task sees as ``self.request`` while it runs."""

    id: str | None = None
    task: str | None = None
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    retries: int = 0
    eta: dt.datetime | None = None
    expires: dt.datetime | None = None
    root_id: str | None = None
    parent_id: str | None = None
    group: str | None = None
    hostname: str | None = None
    delivery_info: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, Any] = field(default_factory=dict)
    is_eager: bool = False
    called_directly: bool = True

    @classmethod
    def from_message(cls, message: Message, *, hostname: str | None = None,
                     attempts: int = 1, is_eager: bool = False) -> Request:
        return cls(
            id=message.id, task=message.task, args=message.args, kwargs=message.kwargs,
            retries=message.retries, eta=message.eta, expires=message.expires,
            root_id=message.root_id, parent_id=message.parent_id, group=message.group,
            hostname=hostname, headers=message.headers, is_eager=is_eager,
            called_directly=False,
            delivery_info={"queue": message.queue, "routing_key": message.queue,
                           "priority": message.priority, "attempts": attempts},
        )


def _location(fn: Callable[..., Any]) -> str:
    code = getattr(fn, "__code__", None)
    where = f"{code.co_filename}:{code.co_firstlineno}" if code else "?"
    return f"{fn.__module__}.{fn.__qualname__} ({where})"


def _module_name(fn: Callable[..., Any]) -> str:
    module = fn.__module__
    if module == "__main__":
        # A task in a script gets the script's own module name, as Celery does.
        main = sys.modules.get("__main__")
        spec = getattr(main, "__spec__", None)
        if spec is not None and spec.name:
            return str(spec.name)
        path = getattr(main, "__file__", None)
        if path:
            return str(path).rsplit("/", 1)[-1].removesuffix(".py")
    return module


def utcnow() -> dt.datetime:
    return clock.now()


class Task(Generic[P, R]):
    """A function registered as a task. Call it to run it here; ``delay()`` to queue it."""

    def __init__(
        self,
        fn: Callable[..., R],
        *,
        name: str | None = None,
        bind: bool = False,
        queue: str | None = None,
        priority: int | None = None,
        ignore_result: bool = False,
        acks_late: bool = True,
        max_retries: int | None = 3,
        default_retry_delay: float = 180.0,
        autoretry_for: tuple[type[BaseException], ...] = (),
        retry_backoff: bool | float = False,
        retry_backoff_max: float = 600.0,
        retry_jitter: bool = True,
        expires: float | dt.timedelta | dt.datetime | None = None,
        serializer: str = "json",
        track_started: bool | None = None,
        time_limit: float | None = None,
        soft_time_limit: float | None = None,
        sensitive: bool = False,
    ) -> None:
        self.fn = fn
        #: Mask the arguments wherever they are written for people (``masking.py``).
        self.sensitive = bool(sensitive)
        self.name = name or f"{_module_name(fn)}.{fn.__qualname__}"
        self.location = _location(fn)
        self.bind = bind
        self.queue = queue
        self.priority = priority
        self.ignore_result = ignore_result
        self.acks_late = acks_late
        self.max_retries = max_retries
        self.default_retry_delay = default_retry_delay
        self.autoretry_for = tuple(autoretry_for)
        self.retry_backoff = retry_backoff
        self.retry_backoff_max = retry_backoff_max
        self.retry_jitter = retry_jitter
        self.expires = expires
        self.serializer = serializer
        self.track_started = track_started
        self.time_limit = time_limit
        self.soft_time_limit = soft_time_limit
        self._signature = inspect.signature(fn)
        # The requests this task runs under, innermost last. A context variable, not a
        # thread-local: an async task's coroutine runs in another thread, in a copy of the
        # context, and must see its request.
        self._requests: contextvars.ContextVar[tuple[Request, ...]] = contextvars.ContextVar(
            f"django_tasks.request:{self.name}", default=())
        self.is_async = inspect.iscoroutinefunction(fn)
        self._check_options()
        functools.update_wrapper(self, fn)

    def _check_options(self) -> None:
        where = f"@shared_task on {self.location}"
        if self.serializer != "json":
            raise ConfigurationError(
                f"{where}: serializer={self.serializer!r} is not supported; only 'json' is "
                "(pickle is never accepted, so messages cannot run code)."
            )
        if self.priority is not None and not (
            isinstance(self.priority, int) and 0 <= self.priority <= MAX_PRIORITY
        ):
            raise ConfigurationError(f"{where}: priority must be an int from 0 to 9.")
        if problem := name_error(self.name, "the task name"):
            raise ConfigurationError(f"{where}: {problem}.")
        if self.queue is not None and (problem := name_error(self.queue, "queue")):
            raise ConfigurationError(f"{where}: {problem}.")
        if self.bind and not self._signature.parameters:
            raise ConfigurationError(
                f"{where}: bind=True passes the task as the first argument; add a 'self' "
                "parameter to the function."
            )
        for option in ("time_limit", "soft_time_limit"):
            error = time_limit_error(getattr(self, option))
            if error:
                raise ConfigurationError(f"{where}: {option} {error}.")
        for exc_type in self.autoretry_for:
            if not (isinstance(exc_type, type) and issubclass(exc_type, BaseException)):
                raise ConfigurationError(f"{where}: autoretry_for must hold exception types.")

    def __repr__(self) -> str:
        return f"<@task: {self.name}>"

    # -- the request context ------------------------------------------------------------

    @property
    def request(self) -> Request:
        stack = self._requests.get()
        return stack[-1] if stack else Request(task=self.name)

    def _push(self, request: Request) -> contextvars.Token[tuple[Request, ...]]:
        return self._requests.set((*self._requests.get(), request))

    def _pop(self, token: contextvars.Token[tuple[Request, ...]]) -> None:
        self._requests.reset(token)

    # -- running -------------------------------------------------------------------------

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the task here and now, like calling the function."""
        token = self._push(Request(task=self.name, args=args, kwargs=kwargs))
        try:
            return self.run(*args, **kwargs)  # an async task's coroutine, to be awaited
        finally:
            self._pop(token)

    def run(self, *args: Any, **kwargs: Any) -> R:
        if self.bind:
            return self.fn(self, *args, **kwargs)
        return self.fn(*args, **kwargs)

    def run_with_request(self, request: Request,
                         limits: tuple[float | None, float | None] = (None, None)) -> R:
        """Run under ``request``, turning ``autoretry_for`` exceptions into retries.

        An async task's coroutine is run to completion here, within ``limits`` (soft, hard
        seconds; sync tasks get theirs from the worker's guard instead)."""
        token = self._push(request)
        try:
            try:
                value: Any = self.run(*request.args, **request.kwargs)
                if self.is_async:
                    value = aio.run(value, f"{self.name}[{request.id}]", *limits)
                return value
            except Retry:
                raise
            except self.autoretry_for as exc:
                raise self._autoretry(exc) from exc
        finally:
            self._pop(token)

    def _autoretry(self, exc: BaseException) -> BaseException:
        countdown = self.default_retry_delay
        if self.retry_backoff:
            factor = 1.0 if self.retry_backoff is True else float(self.retry_backoff)
            countdown = min(self.retry_backoff_max, factor * (2 ** self.request.retries))
            if self.retry_jitter:
                countdown = random.uniform(0, countdown)
        try:
            self.retry(exc=exc, countdown=countdown)
        except BaseException as raised:  # noqa: BLE001 - retry() always raises; keep what it raised
            return raised
        raise AssertionError("retry() returned")  # pragma: no cover

    def retry(self, exc: BaseException | None = None, countdown: float | None = None,
              eta: dt.datetime | None = None, max_retries: int | None = None) -> Retry:
        """Ask the worker to run this task again later; always raises.

        Raises :class:`Retry` (caught by the worker), or, once ``max_retries`` is reached,
        ``exc`` itself (or :class:`MaxRetriesExceededError` without one).
        """
        request = self.request
        limit = self.max_retries if max_retries is None else max_retries
        if request.called_directly:
            if exc is not None:
                raise exc
            raise MaxRetriesExceededError(f"{self.name} called directly cannot be retried.")
        if limit is not None and request.retries >= limit:
            if exc is not None:
                raise exc
            raise MaxRetriesExceededError(
                f"Can't retry {self.name}[{request.id}]: max_retries={limit} reached."
            )
        if eta is not None:
            when = max(0.0, (eta - utcnow()).total_seconds())
        else:
            when = self.default_retry_delay if countdown is None else float(countdown)
        raise Retry(exc=exc, when=when)

    # -- calling -------------------------------------------------------------------------

    def check_arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Raise ``TypeError`` now if ``args``/``kwargs`` don't fit the function."""
        try:
            if self.bind:
                self._signature.bind(None, *args, **kwargs)
            else:
                self._signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{self.name}{self._signature}: {exc}") from None

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> AsyncResult:
        """Queue the task with these arguments; shortcut for ``apply_async(args, kwargs)``."""
        return self.apply_async(args, kwargs)

    def apply_async(
        self,
        args: tuple[Any, ...] | list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        *,
        countdown: float | None = None,
        eta: dt.datetime | None = None,
        expires: float | dt.timedelta | dt.datetime | None = None,
        queue: str | None = None,
        priority: int | None = None,
        task_id: str | None = None,
        headers: dict[str, Any] | None = None,
        ignore_result: bool | None = None,
        time_limit: float | None = None,
        soft_time_limit: float | None = None,
    ) -> AsyncResult:
        """Queue the task. ``countdown``/``eta`` delay it, ``expires`` drops it if late;
        ``time_limit``/``soft_time_limit`` override the task's limits for this call."""
        message = self._message(
            args, kwargs, countdown=countdown, eta=eta, expires=expires, queue=queue,
            priority=priority, task_id=task_id, headers=headers, ignore_result=ignore_result,
            time_limit=time_limit, soft_time_limit=soft_time_limit)
        if task_settings.ALWAYS_EAGER:
            return self._apply_eager(message)
        from .publishing import publish

        return publish(message)

    def _message(self, args: tuple[Any, ...] | list[Any] | None,
                 kwargs: dict[str, Any] | None, *,
                 expires: float | dt.timedelta | dt.datetime | None = None,
                 queue: str | None = None, priority: int | None = None,
                 ignore_result: bool | None = None, **options: Any) -> Message:
        """The message for one call, its arguments checked against the signature; the task's
        own options fill what the call leaves open."""
        args, kwargs = tuple(args or ()), dict(kwargs or {})
        self.check_arguments(args, kwargs)
        return build_message(
            self.name, args, kwargs, expires=self.expires if expires is None else expires,
            queue=queue or self.queue, priority=self.priority if priority is None else priority,
            ignore_result=self.ignore_result if ignore_result is None else ignore_result,
            **options)

    def delay_many(self, calls: Iterable[tuple[Any, ...] | list[Any]],
                   **options: Any) -> list[AsyncResult]:
        """Queue one call per item of ``calls`` (each the positional arguments of one call),
        in batches; ``apply_async``'s options apply to all. ``add.delay_many([(1, 2), (3, 4)])``.
        """
        return self.apply_many(((tuple(args), {}) for args in calls), **options)

    def apply_many(self, calls: Iterable[tuple[tuple[Any, ...] | list[Any], dict[str, Any]]],
                   **options: Any) -> list[AsyncResult]:
        """Queue one call per ``(args, kwargs)`` pair, in batches of a thousand messages (one
        statement each on PostgreSQL; on the database broker all in one transaction).
        Every call's arguments are checked before anything is queued."""
        if "task_id" in options:
            raise TypeError("apply_many() gives each call an id of its own; task_id= is "
                            "for one call (apply_async).")
        messages = [self._message(args, kwargs, **options) for args, kwargs in calls]
        if task_settings.ALWAYS_EAGER:
            return [self._apply_eager(message) for message in messages]
        from .publishing import publish_chunked

        publish_chunked(messages)
        return [AsyncResult(m.id, m.task) for m in messages]

    async def adelay(self, *args: P.args, **kwargs: P.kwargs) -> AsyncResult:
        """``delay()`` for async code (an async view): the enqueue runs in a thread."""
        return await self.aapply_async(args, kwargs)

    async def aapply_async(self, args: tuple[Any, ...] | list[Any] | None = None,
                           kwargs: dict[str, Any] | None = None, **options: Any) -> AsyncResult:
        """``apply_async()`` for async code; takes the same options."""
        from asgiref.sync import sync_to_async

        return await sync_to_async(self.apply_async)(args, kwargs, **options)

    def apply(self, args: tuple[Any, ...] | list[Any] | None = None,
              kwargs: dict[str, Any] | None = None, **options: Any) -> AsyncResult:
        """Run the task here, through the same JSON round trip a worker uses."""
        args, kwargs = tuple(args or ()), dict(kwargs or {})
        self.check_arguments(args, kwargs)
        message = build_message(self.name, args, kwargs, **options)
        return self._apply_eager(message)

    def _apply_eager(self, message: Message) -> EagerResult:
        message = Message.decode(message.encode())
        while True:
            outcome, retry_in = run_message(self, message, worker="eager", is_eager=True)
            store = get_result_store()
            if store is not None and not message.ignore_result:
                store.store_outcomes([outcome])
            if retry_in is None:
                break
            message = message.replace(retries=message.retries + 1)
        if (outcome.state == states.FAILURE and task_settings.EAGER_PROPAGATES
                and outcome.exception is not None):
            raise outcome.exception
        return EagerResult(outcome.meta())


def run_message(task: Task[Any, Any], message: Message, *, worker: str, attempts: int = 1,
                is_eager: bool = False, guard: AbstractContextManager[None] | None = None,
                limits: tuple[float | None, float | None] = (None, None),
                ) -> tuple[TaskOutcome, float | None]:
    """Run one decoded message; return its outcome and, for a retry, the delay in seconds.

    Shared by the worker and eager mode so both behave alike. Never raises for the task's
    own errors: they become a FAILURE outcome with the traceback.
    """
    request = Request.from_message(message, hostname=worker, attempts=attempts,
                                   is_eager=is_eager)
    outcome = TaskOutcome(
        task_id=message.id, task_name=message.task, state=states.SUCCESS,
        args=message.args, kwargs=message.kwargs, queue=message.queue, worker=worker,
        attempts=attempts, retries=message.retries, started_at=utcnow(),
    )
    retry_in: float | None = None
    try:
        task.check_arguments(message.args, message.kwargs)
        with guard or nullcontext():  # inside the try: a limit that fires is a FAILURE
            value = task.run_with_request(request, limits)
        try:
            from . import serialization

            outcome.result = serialization.loads(
                serialization.dumps(value, f"return value of {task.name}")
            )
        except EncodeError as exc:
            raise exc from None
    except Retry as retry:
        outcome.state = states.RETRY
        retry_in = retry.when or 0.0
        reason = retry.exc if retry.exc is not None else retry
        outcome.result = exception_to_result(reason)
        outcome.traceback = _format_tb(reason)
    except ColdShutdown:
        raise  # the worker stopping the task, not the task failing
    except BaseException as exc:
        if is_eager and not isinstance(exc, Exception):
            raise  # Ctrl-C or sys.exit() around an eager call is the caller's
        # sys.exit() and KeyboardInterrupt raised by a task end it like any error: they
        # must not take the worker down, nor send the message back uncounted for ever.
        outcome.state = states.FAILURE
        outcome.result = exception_to_result(exc)
        outcome.traceback = _format_tb(exc)
        outcome.exception = exc
    outcome.date_done = utcnow()
    return outcome, retry_in


def _format_tb(exc: BaseException) -> str:
    return "".join(tb.format_exception(type(exc), exc, exc.__traceback__))


def _to_datetime(value: float | dt.timedelta | dt.datetime, now: dt.datetime) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, dt.timedelta):
        return now + value
    return now + dt.timedelta(seconds=float(value))


def build_message(
    name: str, args: tuple[Any, ...], kwargs: dict[str, Any], *,
    countdown: float | None = None, eta: dt.datetime | None = None,
    expires: float | dt.timedelta | dt.datetime | None = None, queue: str | None = None,
    priority: int | None = None, task_id: str | None = None,
    headers: dict[str, Any] | None = None, ignore_result: bool = False,
    time_limit: float | None = None, soft_time_limit: float | None = None,
) -> Message:
    if countdown is not None and eta is not None:
        raise TypeError("Pass either countdown= or eta=, not both.")
    for option, value in (("time_limit", time_limit), ("soft_time_limit", soft_time_limit)):
        error = time_limit_error(value)
        if error:
            raise TypeError(f"{option} {error}.")
    if (queue is None or priority is None) and task_settings.TASK_ROUTES:
        from .routing import route_for

        route = route_for(name, args, kwargs, {"queue": queue, "priority": priority},
                          task_settings.TASK_ROUTES)
        queue = queue or route.queue
        priority = route.priority if priority is None else priority
    if priority is not None and not (isinstance(priority, int) and 0 <= priority <= 9):
        raise TypeError(f"priority must be an int from 0 to 9, not {priority!r}.")
    task_id = None if task_id is None or task_id == "" else str(task_id)
    for what, text in (("task name", name), ("task_id", task_id), ("queue", queue)):
        if text is not None and (problem := name_error(text, what)):
            raise EncodeError(f"Cannot queue {printable(str(name))}: {problem}.")
    now = utcnow()
    when = _to_datetime(countdown, now) if countdown is not None else eta
    if when is not None and when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    message = Message(
        id=str(task_id or uuid.uuid4()), task=name, args=args, kwargs=kwargs,
        queue=queue or str(task_settings.DEFAULT_QUEUE), priority=priority or 0,
        eta=when, expires=_to_datetime(expires, now) if expires is not None else None,
        headers=dict(headers or {}), ignore_result=ignore_result,
        timelimit=(None if time_limit is None else float(time_limit),
                   None if soft_time_limit is None else float(soft_time_limit)),
    )
    message.encode()  # fail here, in the caller, if the arguments are not serializable
    return message


def send_task(name: str, args: tuple[Any, ...] | list[Any] | None = None,
              kwargs: dict[str, Any] | None = None, **options: Any) -> AsyncResult:
    """Queue a task by name, without importing it (it is checked by the worker instead)."""
    message = build_message(name, tuple(args or ()), dict(kwargs or {}), **options)
    if task_settings.ALWAYS_EAGER and name in registry:
        return registry.get(name)._apply_eager(message)
    from .publishing import publish

    return publish(message)


@overload
def shared_task(fn: Callable[P, R]) -> Task[P, R]: ...
@overload
def shared_task(**options: Any) -> Callable[[Callable[P, R]], Task[P, R]]: ...


def shared_task(fn: Callable[..., Any] | None = None, **options: Any) -> Any:
    """Turn a function into a task: ``@shared_task`` or ``@shared_task(name=..., ...)``."""

    def decorate(func: Callable[..., Any]) -> Task[Any, Any]:
        task: Task[Any, Any] = Task(func, **options)
        registry.register(task)
        return task

    if fn is not None:
        if options:
            raise TypeError("Use @shared_task or @shared_task(...), not both.")
        return decorate(fn)
    return decorate
