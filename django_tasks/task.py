"""``@shared_task`` and the ``Task`` object: defining, calling and retrying tasks.

Running a task is the kernel's (``kernel.py``); the request a bound task sees is in
``request.py``, building a message in ``calling.py``. Their names stay importable from here.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import functools
import inspect
import random
import sys
import types
from collections.abc import Callable
from typing import Any, Generic, ParamSpec, TypeVar, overload

from . import aio, states
from . import request as request_module
from .calling import MAX_PRIORITY, Calls, build_message, send_task, utcnow
from .conf import get_result_store, task_settings, time_limit_error
from .exceptions import ConfigurationError, MaxRetriesExceededError, Retry
from .kernel import Run, eager_kernel, run_message
from .message import Message, name_error
from .options import task_options
from .ratelimit import RateError, parse_rate
from .registry import registry
from .request import Request
from .result import AsyncResult as _AsyncResult
from .result import EagerResult

__all__ = ["MAX_PRIORITY", "Request", "Task", "build_message", "run_message", "send_task",
           "shared_task", "utcnow"]

P = ParamSpec("P")
R = TypeVar("R")

#: The task's own hooks, as Celery's ``Task`` has them; the kernel calls those a task
#: defines (in a base class, or passed as options).
HANDLERS = ("before_start", "on_success", "on_failure", "on_retry", "after_return")
_RETRY_KWARGS = frozenset({"max_retries", "countdown", "eta"})


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


class Task(Calls[P, R], Generic[P, R]):
    """A function registered as a task. Call it to run it here; ``delay()`` to queue it.

    Subclass it for a base class with Celery's hooks (``@shared_task(base=MyTask)``):
    ``before_start``, ``on_success``, ``on_failure``, ``on_retry`` and ``after_return``;
    class attributes of a base class (``max_retries = 5``) are its tasks' defaults.
    """

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
        dont_autoretry_for: tuple[type[BaseException], ...] = (),
        retry_kwargs: dict[str, Any] | None = None,
        retry_backoff: bool | float = False,
        retry_backoff_max: float = 600.0,
        retry_jitter: bool = True,
        expires: float | dt.timedelta | dt.datetime | None = None,
        serializer: str = "json",
        track_started: bool | None = None,
        time_limit: float | None = None,
        soft_time_limit: float | None = None,
        rate_limit: str | float | None = None,
        sensitive: bool = False,
        throws: tuple[type[BaseException], ...] = (),
        typing: bool = True,
        before_start: Callable[..., Any] | None = None,
        on_success: Callable[..., Any] | None = None,
        on_failure: Callable[..., Any] | None = None,
        on_retry: Callable[..., Any] | None = None,
        after_return: Callable[..., Any] | None = None,
        **celery_options: Any,
    ) -> None:
        if celery_options:  # Celery's other options: a warning each, or a TypeError
            taken = task_options(celery_options, TASK_PARAMETERS)
            if taken:
                given = {k: v for k, v in locals().items() if k in TASK_PARAMETERS}
                type(self).__init__(self, fn, **{**given, **taken})
                return
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
        self.dont_autoretry_for = tuple(dont_autoretry_for)
        self.retry_kwargs = dict(retry_kwargs or {})
        self.retry_backoff = retry_backoff
        self.retry_backoff_max = retry_backoff_max
        self.retry_jitter = retry_jitter
        self.expires = expires
        self.serializer = serializer
        self.track_started = track_started
        self.time_limit = time_limit
        self.soft_time_limit = soft_time_limit
        #: ``"10/s"``, ``"100/m"``, ``"1000/h"``: for the whole cluster (``ratelimit.py``).
        #: Read on every run, so it can be changed while workers run.
        self.rate_limit = rate_limit
        #: Expected errors: logged at INFO without a traceback (still a FAILURE).
        self.throws = tuple(throws)
        #: Check each call's arguments against the signature (``typing=False``: don't).
        self.typing = bool(typing)
        # A bound task's first parameter is the task. Celery reads the signature of the
        # function it is given, not of what functools.wraps says it wraps: a decorator's
        # (self, *args) wrapper around fn(x) is bound like that.
        self._signature = inspect.signature(fn, follow_wrapped=not bind)
        # The requests this task runs under, innermost last. A context variable, not a
        # thread-local: an async task's coroutine runs in another thread, in a copy of the
        # context, and must see its request.
        self._requests: contextvars.ContextVar[tuple[Request, ...]] = contextvars.ContextVar(
            f"django_tasks.request:{self.name}", default=())
        self.is_async = inspect.iscoroutinefunction(fn)
        passed = {"before_start": before_start, "on_success": on_success,
                  "on_failure": on_failure, "on_retry": on_retry, "after_return": after_return}
        for handler, function in passed.items():
            if function is not None:
                if not callable(function):
                    raise ConfigurationError(
                        f"@shared_task on {self.location}: {handler} must be a function "
                        "taking the task first, as a method would.")
                setattr(self, handler, types.MethodType(function, self))
        #: The handlers this task defines (the kernel calls only these).
        self.handlers = frozenset(
            h for h in HANDLERS
            if h in vars(self) or getattr(type(self), h) is not getattr(Task, h))
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
        try:
            parse_rate(self.rate_limit)
        except RateError as exc:
            raise ConfigurationError(f"{where}: {exc}") from None
        for option in ("autoretry_for", "dont_autoretry_for", "throws"):
            for exc_type in getattr(self, option):
                if not (isinstance(exc_type, type) and issubclass(exc_type, BaseException)):
                    raise ConfigurationError(f"{where}: {option} must hold exception types.")
        if unknown := set(self.retry_kwargs) - _RETRY_KWARGS:
            raise ConfigurationError(
                f"{where}: retry_kwargs takes {', '.join(sorted(_RETRY_KWARGS))}, not "
                f"{', '.join(sorted(unknown))}.")

    def __repr__(self) -> str:
        return f"<@task: {self.name}>"

    # -- Celery's hooks: override in a base class, or pass as options ----------------------

    def before_start(self, task_id: str, args: tuple[Any, ...],
                     kwargs: dict[str, Any]) -> None:
        """Before the task runs (after ``task_prerun``)."""

    def on_success(self, retval: Any, task_id: str, args: tuple[Any, ...],
                   kwargs: dict[str, Any]) -> None:
        """After the task returned ``retval`` (as stored: after the JSON round trip)."""

    def on_failure(self, exc: BaseException, task_id: str, args: tuple[Any, ...],
                   kwargs: dict[str, Any], einfo: Any) -> None:
        """After the task raised ``exc``; ``einfo`` has ``exception``, ``type``, ``tb`` and
        the formatted ``traceback``."""

    def on_retry(self, exc: BaseException, task_id: str, args: tuple[Any, ...],
                 kwargs: dict[str, Any], einfo: Any) -> None:
        """After the task asked for a retry; ``exc`` is its reason."""

    def after_return(self, status: str, retval: Any, task_id: str, args: tuple[Any, ...],
                     kwargs: dict[str, Any], einfo: Any) -> None:
        """After every run, after the handler of its outcome; ``status`` is its state."""

    # -- the request context ------------------------------------------------------------

    @property
    def request(self) -> Request:
        stack = self._requests.get()
        return stack[-1] if stack else Request(task=self.name)

    def _push(self, request: Request) -> tuple[contextvars.Token[tuple[Request, ...]],
                                               contextvars.Token[Request | None] | None]:
        current = None if request.called_directly else request_module._current.set(request)
        return self._requests.set((*self._requests.get(), request)), current

    def _pop(self, token: tuple[contextvars.Token[tuple[Request, ...]],
                                contextvars.Token[Request | None] | None]) -> None:
        requests, current = token
        self._requests.reset(requests)
        if current is not None:
            request_module._current.reset(current)

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
        """Run under ``request`` (see :meth:`_invoke`)."""
        token = self._push(request)
        try:
            return self._invoke(request, limits)
        finally:
            self._pop(token)

    def _invoke(self, request: Request,
                limits: tuple[float | None, float | None] = (None, None)) -> R:
        """Run with the request pushed already, turning ``autoretry_for`` exceptions into
        retries. An async task's coroutine is run to completion here, within ``limits``
        (soft, hard seconds; sync tasks get theirs from the time-limit hook instead)."""
        try:
            value: Any = self.run(*request.args, **request.kwargs)
            if self.is_async:
                value = aio.run(value, f"{self.name}[{request.id}]", *limits)
            return value
        except Retry:
            raise
        except self.autoretry_for as exc:
            if self.dont_autoretry_for and isinstance(exc, self.dont_autoretry_for):
                raise
            raise self._autoretry(exc) from exc

    def _autoretry(self, exc: BaseException) -> BaseException:
        options = self.retry_kwargs
        countdown = float(options.get("countdown", self.default_retry_delay))
        if self.retry_backoff:
            factor = 1.0 if self.retry_backoff is True else float(self.retry_backoff)
            countdown = min(self.retry_backoff_max, factor * (2 ** self.request.retries))
            if self.retry_jitter:
                countdown = random.uniform(0, countdown)
        try:
            self.retry(exc=exc, countdown=countdown, eta=options.get("eta"),
                       max_retries=options.get("max_retries"))
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

    def update_state(self, task_id: str | None = None, state: str | None = None,
                     meta: Any = None, **kwargs: Any) -> bool:
        """Store a state of the task's own (``state="PROGRESS"``, ``meta={"current": 3,
        "total": 10}``) on its result row now, as Celery does; ``task_id`` defaults to the
        running task's. ``AsyncResult.state`` and ``.info`` read it back. A final state is
        never replaced; False when nothing was written (see ``progress.py``)."""
        from . import progress

        request = self.request
        return progress.update_state(task_id or request.id, state, meta,
                                     request.hostname or "")

    async def aupdate_state(self, task_id: str | None = None, state: str | None = None,
                            meta: Any = None, **kwargs: Any) -> bool:
        """``update_state()`` for ``async def`` tasks: the write runs off the event loop."""
        from asgiref.sync import sync_to_async

        return await sync_to_async(self.update_state)(task_id, state, meta, **kwargs)

    def apply(self, args: tuple[Any, ...] | list[Any] | None = None,
              kwargs: dict[str, Any] | None = None, **options: Any) -> _AsyncResult:
        """Run the task here, through the same JSON round trip a worker uses."""
        args, kwargs = tuple(args or ()), dict(kwargs or {})
        if self.typing:
            self.check_arguments(args, kwargs)
        message = build_message(self.name, args, kwargs, **options)
        return self._apply_eager(message)

    def _apply_eager(self, message: Message) -> EagerResult:
        message = Message.decode(message.encode())
        kernel = eager_kernel()
        while True:
            run = Run(self, message, "eager", is_eager=True)
            kernel.run(run)
            outcome = run.outcome
            assert outcome is not None
            store = get_result_store()
            if store is not None and not message.ignore_result:
                store.store_outcomes([outcome])
            if run.retry_in is None:
                break
            message = message.replace(retries=message.retries + 1)
        follow_ups = list(run.follow_up or ())
        if run.on_settle:  # a workflow's next steps (followups.py)
            from .results.workflows import MemoryWorkflows, workflows

            storeless = workflows(store, eager=True)
            if store is None and isinstance(storeless, MemoryWorkflows):
                storeless.values[outcome.task_id] = outcome.meta()  # read by a chord
            for action in run.on_settle:
                follow_ups += action(store, eager=True)
        for follow_up in follow_ups:  # run in order, here, like the task itself
            if follow_up.task in registry:
                registry.get(follow_up.task)._apply_eager(follow_up)
        if (outcome.state == states.FAILURE and task_settings.EAGER_PROPAGATES
                and outcome.exception is not None):
            raise outcome.exception
        return EagerResult(outcome.meta())


TASK_PARAMETERS = frozenset(
    name for name in inspect.signature(Task.__init__).parameters
    if name not in ("self", "fn", "celery_options"))


def _base_defaults(base: type[Task[Any, Any]]) -> dict[str, Any]:
    """Options a base class sets as class attributes (``max_retries = 5``)."""
    found: dict[str, Any] = {}
    for klass in reversed(base.__mro__[:base.__mro__.index(Task)]):
        for name, value in vars(klass).items():
            if name in TASK_PARAMETERS and name not in HANDLERS:
                found[name] = value
    return found


@overload
def shared_task(fn: Callable[P, R]) -> Task[P, R]: ...
@overload
def shared_task(**options: Any) -> Callable[[Callable[P, R]], Task[P, R]]: ...


def shared_task(fn: Callable[..., Any] | None = None, **options: Any) -> Any:
    """Turn a function into a task: ``@shared_task`` or ``@shared_task(name=..., ...)``;
    ``base=MyTask`` makes it an instance of a subclass of :class:`Task`."""
    base = options.pop("base", None) or Task
    if not (isinstance(base, type) and issubclass(base, Task)):
        raise ConfigurationError(f"base={base!r} must be a subclass of django_tasks.Task.")

    def decorate(func: Callable[..., Any]) -> Task[Any, Any]:
        task: Task[Any, Any] = base(func, **{**_base_defaults(base), **options})
        registry.register(task)
        return task

    if fn is not None:
        if options:
            raise TypeError("Use @shared_task or @shared_task(...), not both.")
        return decorate(fn)
    return decorate
