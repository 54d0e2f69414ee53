"""Calling a task: building the message of one call, the ``Task`` methods that queue it
(:class:`Calls`), and queueing a task by name (``send_task``)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import inspect
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from . import clock
from .conf import task_settings, time_limit_error
from .exceptions import EncodeError
from .message import MAX_PRIORITY, Message, name_error, new_id, new_ids, printable
from .options import call_options
from .request import current_request
from .result import AsyncResult as _AsyncResult

if TYPE_CHECKING:
    from .canvas import Signature
    from .result import AsyncResult, EagerResult

P = ParamSpec("P")
R = TypeVar("R")


def utcnow() -> dt.datetime:
    return clock.now()


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
    root_id: str | None = None, parent_id: str | None = None, group_id: str | None = None,
    link: Any = None, link_error: Any = None, chain: Any = None, chord: Any = None,
    **celery_options: Any,
) -> Message:
    """The message of one call. ``link``/``link_error`` are signatures (or lists of them) to
    apply when the task succeeds or fails; ``chain`` and ``chord`` are what a workflow
    carries (``canvas/``). ``celery_options`` are Celery's other ``apply_async`` options:
    accepted with a warning where they have no meaning here (``options.py``)."""
    if celery_options:
        call_options(celery_options)
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
    if priority is not None and not (
            isinstance(priority, int) and 0 <= priority <= MAX_PRIORITY):
        raise TypeError(f"priority must be an int from 0 to 9, not {priority!r}.")
    task_id = None if task_id is None or task_id == "" else str(task_id)
    if root_id is None and parent_id is None:  # queued by a running task: its child
        running = current_request()
        if running is not None and running.id:
            parent_id, root_id = running.id, running.root_id or running.id
    for what, text in (("task name", name), ("task_id", task_id), ("queue", queue),
                       ("root_id", root_id), ("parent_id", parent_id),
                       ("group_id", group_id)):
        if text is not None and (problem := name_error(text, what)):
            raise EncodeError(f"Cannot queue {printable(str(name))}: {problem}.")
    now = utcnow()
    when = _to_datetime(countdown, now) if countdown is not None else eta
    if when is not None and when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    workflow: dict[str, Any] = {}
    if link or link_error or chain or chord:
        from .canvas import embedded

        workflow = {"callbacks": embedded(link, "link"),
                    "errbacks": embedded(link_error, "link_error"),
                    "chain": embedded(chain, "chain"), "chord": dict(chord) if chord else None}
    message = Message(
        id=task_id or new_id(), task=name, args=args, kwargs=kwargs,
        queue=queue or str(task_settings.DEFAULT_QUEUE), priority=priority or 0,
        eta=when, expires=_to_datetime(expires, now) if expires is not None else None,
        headers=dict(headers or {}), ignore_result=ignore_result,
        timelimit=(None if time_limit is None else float(time_limit),
                   None if soft_time_limit is None else float(soft_time_limit)),
        root_id=root_id, parent_id=parent_id, group=group_id, **workflow,
    )
    message.encode()  # fail here, in the caller, if the arguments are not serializable
    return message


def build_messages(name: str, calls: Sequence[tuple[tuple[Any, ...], dict[str, Any]]],
                   **options: Any) -> list[Message]:
    """The messages of many calls of one task with the same options (``apply_many()``): the
    options are checked once, by ``build_message()`` for the first call, and every other
    message differs from the first only in its id and arguments (a ``countdown=`` gives
    them all the same eta). With ``TASKS_TASK_ROUTES`` and no queue or priority given, a
    router may route each call by its arguments: each is built on its own."""
    if not calls:
        return []
    if task_settings.TASK_ROUTES and (options.get("queue") is None
                                      or options.get("priority") is None):
        return [build_message(name, args, kwargs, **options) for args, kwargs in calls]
    first = build_message(name, *calls[0], **options)
    shared = {f.name: getattr(first, f.name) for f in dataclasses.fields(Message)
              if f.init and f.name not in _OWN_FIELDS}
    messages = [first]
    for task_id, (args, kwargs) in zip(new_ids(len(calls) - 1), calls[1:], strict=True):
        message = Message(id=task_id, args=args, kwargs=kwargs, headers=dict(first.headers),
                          **shared)
        message.encode()  # fail here, in the caller, if the arguments are not serializable
        messages.append(message)
    return messages


#: The fields of a message that ``build_messages()`` does not take from the first.
_OWN_FIELDS = frozenset({"id", "args", "kwargs", "headers"})


def send_task(name: str, args: tuple[Any, ...] | list[Any] | None = None,
              kwargs: dict[str, Any] | None = None, **options: Any) -> AsyncResult:
    """Queue a task by name, without importing it (it is checked by the worker instead)."""
    from .registry import registry

    message = build_message(name, tuple(args or ()), dict(kwargs or {}), **options)
    if task_settings.ALWAYS_EAGER and name in registry:
        return registry.get(name)._apply_eager(message)
    from .publishing import publish

    return publish(message)


class Calls(Generic[P, R]):
    """The ways to queue a task (a part of :class:`~django_tasks.task.Task`)."""

    name: str
    bind: bool
    queue: str | None
    priority: int | None
    ignore_result: bool
    expires: float | dt.timedelta | dt.datetime | None
    typing: bool
    _signature: inspect.Signature

    def _apply_eager(self, message: Message) -> EagerResult:
        raise NotImplementedError

    def check_arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Raise ``TypeError`` now if ``args``/``kwargs`` don't fit the function."""
        if not kwargs:  # the common call: a count of positional arguments to compare
            fewest, most = self._arity
            if fewest <= len(args) <= most:
                return
        try:
            if self.bind:
                self._signature.bind(None, *args, **kwargs)
            else:
                self._signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{self.name}{self._signature}: {exc}") from None

    @functools.cached_property
    def _arity(self) -> tuple[int, int]:
        """The fewest and most positional arguments a call may pass, when that alone decides
        whether a call without keyword arguments fits; else ``(1, 0)`` (never fits: bind)."""
        params = list(self._signature.parameters.values())[1 if self.bind else 0:]
        positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        if any(p.kind not in positional for p in params):
            return (1, 0)
        return (sum(p.default is inspect.Parameter.empty for p in params), len(params))

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> _AsyncResult:
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
        **celery_options: Any,
    ) -> _AsyncResult:
        """Queue the task. ``countdown``/``eta`` delay it, ``expires`` drops it if late;
        ``time_limit``/``soft_time_limit`` override the task's limits for this call.
        Celery's other options are accepted (``root_id``, ``parent_id``, ``group_id`` are
        carried; the rest log a warning once, see docs/reference/tasks.md)."""
        message = self._message(
            args, kwargs, countdown=countdown, eta=eta, expires=expires, queue=queue,
            priority=priority, task_id=task_id, headers=headers, ignore_result=ignore_result,
            time_limit=time_limit, soft_time_limit=soft_time_limit, **celery_options)
        if task_settings.ALWAYS_EAGER:
            return self._apply_eager(message)
        from .publishing import publish

        return publish(message)

    def _message(self, args: tuple[Any, ...] | list[Any] | None,
                 kwargs: dict[str, Any] | None, **options: Any) -> Message:
        """The message for one call, its arguments checked against the signature; the task's
        own options fill what the call leaves open."""
        args, kwargs = tuple(args or ()), dict(kwargs or {})
        if self.typing:
            self.check_arguments(args, kwargs)
        return build_message(self.name, args, kwargs, **self._options(**options))

    def _options(self, *, expires: float | dt.timedelta | dt.datetime | None = None,
                 queue: str | None = None, priority: int | None = None,
                 ignore_result: bool | None = None, **options: Any) -> dict[str, Any]:
        """A call's options, the task's own filling what the call leaves open."""
        return {"expires": self.expires if expires is None else expires,
                "queue": queue or self.queue,
                "priority": self.priority if priority is None else priority,
                "ignore_result": self.ignore_result if ignore_result is None else ignore_result,
                **options}

    def delay_many(self, calls: Iterable[tuple[Any, ...] | list[Any]],
                   **options: Any) -> list[_AsyncResult]:
        """Queue one call per item of ``calls`` (each the positional arguments of one call),
        in batches; ``apply_async``'s options apply to all. ``add.delay_many([(1, 2), (3, 4)])``.
        """
        return self.apply_many(((tuple(args), {}) for args in calls), **options)

    def apply_many(self, calls: Iterable[tuple[tuple[Any, ...] | list[Any], dict[str, Any]]],
                   **options: Any) -> list[_AsyncResult]:
        """Queue one call per ``(args, kwargs)`` pair, in batches of a thousand messages (one
        statement each on PostgreSQL; on the database broker all in one transaction).
        Every call's arguments are checked before anything is queued."""
        if "task_id" in options:
            raise TypeError("apply_many() gives each call an id of its own; task_id= is "
                            "for one call (apply_async).")
        checked = [(tuple(args or ()), dict(kwargs or {})) for args, kwargs in calls]
        if self.typing:
            for args, kwargs in checked:
                self.check_arguments(args, kwargs)
        messages = build_messages(self.name, checked, **self._options(**options))
        if task_settings.ALWAYS_EAGER:
            return [self._apply_eager(message) for message in messages]
        from .publishing import publish_chunked

        publish_chunked(messages)
        return [_AsyncResult(m.id, m.task) for m in messages]

    async def adelay(self, *args: P.args, **kwargs: P.kwargs) -> _AsyncResult:
        """``delay()`` for async code (an async view): the enqueue runs in a thread."""
        return await self.aapply_async(args, kwargs)

    async def aapply_async(self, args: tuple[Any, ...] | list[Any] | None = None,
                           kwargs: dict[str, Any] | None = None, **options: Any) -> _AsyncResult:
        """``apply_async()`` for async code; takes the same options."""
        from asgiref.sync import sync_to_async

        return await sync_to_async(self.apply_async)(args, kwargs, **options)

    def apply_async_on_commit(self, args: tuple[Any, ...] | list[Any] | None = None,
                              kwargs: dict[str, Any] | None = None, *,
                              using: str | None = None, **options: Any) -> None:
        """Celery's ``apply_async_on_commit()``: queue the task once the transaction of
        ``using`` commits (at once outside one). Returns None: the id is not known yet.

        ``apply_async()`` already waits for the commit and returns the id at once, and on
        the database broker the message is part of the transaction: prefer it. The
        arguments are checked now, so a mistake still fails in the caller."""
        from django.db import transaction

        args, kwargs = tuple(args or ()), dict(kwargs or {})
        if self.typing:
            self.check_arguments(args, kwargs)
        transaction.on_commit(functools.partial(self.apply_async, args, kwargs, **options),
                              using=using)

    def delay_on_commit(self, *args: P.args, **kwargs: P.kwargs) -> None:
        """Celery's ``delay_on_commit()``; see :meth:`apply_async_on_commit`."""
        self.apply_async_on_commit(args, kwargs)

    # -- signatures (canvas/) ----------------------------------------------------------------

    def s(self, *args: Any, **kwargs: Any) -> Signature:
        """A signature of a call of this task: ``add.s(2)``; arguments given when it is
        applied go first (a callback gets the parent's result: ``link=multiply.s(3)``)."""
        from .canvas import Signature

        return Signature(self, args, kwargs)

    def si(self, *args: Any, **kwargs: Any) -> Signature:
        """An immutable signature: it runs with these arguments only, never a parent's
        result."""
        from .canvas import Signature

        return Signature(self, args, kwargs, immutable=True)

    def signature(self, args: tuple[Any, ...] | list[Any] | None = None,
                  kwargs: dict[str, Any] | None = None, **options: Any) -> Signature:
        """A signature with call options: ``add.signature((2, 2), countdown=10)``."""
        from .canvas import Signature

        return Signature(self, args, kwargs, options)

    subtask = signature

    def AsyncResult(self, task_id: str) -> _AsyncResult:  # Celery's name
        """The result of this task's call ``task_id``."""
        return _AsyncResult(task_id, self.name)

