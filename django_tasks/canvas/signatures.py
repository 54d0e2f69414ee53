"""Signatures: one task call written down, in Celery's dict shape (see the package's
docstring), and how a workflow's first messages are published."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

from django.db import transaction

from ..calling import build_message
from ..conf import get_result_store, task_settings
from ..message import new_id
from ..registry import registry
from ..result import AsyncResult

if TYPE_CHECKING:
    from ..message import Message
    from ..results.base import ResultStore


class Signature(dict[str, Any]):  # Celery's Signature is a dict too
    """One task call written down: ``add.s(2, 2)``, ``signature("proj.add", (2, 2))``.

    Arguments given when it is applied come before its own (a callback gets the parent's
    result first: ``add.apply_async((2, 2), link=multiply.s(3))`` runs ``multiply(4, 3)``),
    unless it is immutable (``add.si(2, 2)``): then it runs with its own arguments only.
    """

    #: ``subtask_type`` of each kind of signature, for :meth:`from_dict`.
    TYPES: dict[str, type[Signature]] = {}
    subtask_type_name: str | None = None

    def __init__(self, task: Any = None, args: Iterable[Any] | None = None,
                 kwargs: dict[str, Any] | None = None, options: dict[str, Any] | None = None,
                 subtask_type: str | None = None, immutable: bool = False,
                 **extra_options: Any) -> None:
        if isinstance(task, dict):  # a signature, or its dict from a message (shared: use
            super().__init__(task)  # clone() for a copy)
            self.setdefault("args", [])
            self.setdefault("kwargs", {})
            self.setdefault("options", {})
            self.setdefault("subtask_type", None)
            self.setdefault("immutable", False)
            self.setdefault("chord_size", None)
            return
        name = getattr(task, "name", task)
        if not isinstance(name, str) or not name:
            raise TypeError(f"A signature needs a task or a task name, not {task!r}.")
        super().__init__(task=name, args=list(args or ()), kwargs=dict(kwargs or {}),
                         options={**(options or {}), **extra_options},
                         subtask_type=subtask_type or self.subtask_type_name,
                         immutable=bool(immutable), chord_size=None)

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if cls.subtask_type_name:
            Signature.TYPES[cls.subtask_type_name] = cls

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> Signature:
        """The signature a dict describes (a chain's, group's or chord's, by its
        ``subtask_type``)."""
        if isinstance(value, Signature):
            return value
        if not isinstance(value, dict) or "task" not in value:
            raise TypeError(f"Not a signature: {value!r}")
        kind = cls.TYPES.get(value.get("subtask_type") or "", Signature)
        sig = kind.__new__(kind)
        Signature.__init__(sig, value)
        return sig

    # -- what it holds ----------------------------------------------------------------------

    @property
    def task(self) -> str:
        return str(self["task"])

    name = task

    @property
    def args(self) -> tuple[Any, ...]:
        return tuple(self["args"])

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self["kwargs"])

    @property
    def options(self) -> dict[str, Any]:
        return self["options"]

    @property
    def immutable(self) -> bool:
        return bool(self.get("immutable"))

    @property
    def subtask_type(self) -> str | None:
        return self.get("subtask_type")

    @property
    def id(self) -> str | None:
        """The task id, once :meth:`freeze` (or ``.set(task_id=...)``) gave it one."""
        return self.options.get("task_id")

    @property
    def type(self) -> Any:
        """The task itself (Celery's name), looked up in the registry."""
        return registry.get(self.task)

    # -- changing it ----------------------------------------------------------------------

    def clone(self, args: Iterable[Any] | None = None, kwargs: dict[str, Any] | None = None,
              **options: Any) -> Signature:
        """A copy, with ``args`` put before its own (unless immutable), ``kwargs`` and
        ``options`` merged in."""
        sig = _copied(self)
        if args and not self.immutable:
            sig["args"] = [*args, *sig["args"]]
        if kwargs and not self.immutable:
            sig["kwargs"] = {**sig["kwargs"], **kwargs}
        sig["options"].update(options)
        return sig

    def set(self, immutable: bool | None = None, **options: Any) -> Signature:
        """Set call options (``queue=``, ``countdown=``, ...) on this signature; returns it."""
        if immutable is not None:
            self["immutable"] = bool(immutable)
        self.options.update(options)
        return self

    def set_immutable(self, immutable: bool) -> None:
        self["immutable"] = bool(immutable)

    def link(self, callback: dict[str, Any]) -> dict[str, Any]:
        """Apply ``callback`` with this task's result when it succeeds; returns it."""
        self.options.setdefault("link", []).append(Signature.from_dict(callback))
        return callback

    def link_error(self, errback: dict[str, Any]) -> dict[str, Any]:
        """Apply ``errback`` with this task's id when it fails; returns it."""
        self.options.setdefault("link_error", []).append(Signature.from_dict(errback))
        return errback

    def on_error(self, errback: dict[str, Any]) -> Signature:
        """:meth:`link_error`, returning this signature (to go on writing a chain)."""
        self.link_error(errback)
        return self

    def freeze(self, _id: str | None = None) -> Any:
        """Give the call its task id now (kept in ``options``); its result, before it is
        sent."""
        if _id is not None:
            self.options["task_id"] = _id
        self.options.setdefault("task_id", new_id())
        return AsyncResult(self.options["task_id"], self.task)

    def __or__(self, other: Any) -> Signature:  # type: ignore[override]
        from .flows import chain

        if isinstance(other, Signature):
            return chain(self, other)
        return NotImplemented

    # -- applying it ----------------------------------------------------------------------

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the task here, as a function (Celery does the same)."""
        return self.type(*self._args(args), **{**self.kwargs, **kwargs})

    def delay(self, *args: Any, **kwargs: Any) -> Any:
        return self.apply_async(args, kwargs)

    def apply_async(self, args: Iterable[Any] | None = None,
                    kwargs: dict[str, Any] | None = None, **options: Any) -> Any:
        """Queue the call (its own arguments after ``args``); returns its result handle
        (:class:`~django_tasks.group_result.GroupResult` for a group)."""
        return self._apply(args, kwargs, options, eager=task_settings.ALWAYS_EAGER)

    def apply(self, args: Iterable[Any] | None = None, kwargs: dict[str, Any] | None = None,
              **options: Any) -> Any:
        """Run the workflow here and now, in order (as eager mode does)."""
        return self._apply(args, kwargs, options, eager=True)

    def _apply(self, args: Iterable[Any] | None, kwargs: dict[str, Any] | None,
               options: dict[str, Any], *, eager: bool) -> Any:
        sig = self.clone(**options)
        result = sig.freeze()
        store = get_result_store()
        with _publishing(store, eager or not sig.writes_rows()):
            _publish(sig.messages(tuple(args or ()), dict(kwargs or {}), store), eager)
        return result

    def writes_rows(self) -> bool:
        """Whether applying it writes rows of its own (a chord's counter), which must commit
        with its messages."""
        return False

    def _args(self, args: Sequence[Any]) -> tuple[Any, ...]:
        return self.args if self.immutable else (*args, *self.args)

    def messages(self, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None,
                 store: ResultStore | None = None, **options: Any) -> list[Message]:
        """The messages that start this call with ``args`` put first; a chord writes its
        counter row through ``store`` too (in the caller's transaction)."""
        merged = {**self["options"], **options}
        merged.pop("chord_size", None)
        own_args, own_kwargs = self["args"], self["kwargs"]
        if self.get("immutable"):
            call_args, call_kwargs = tuple(own_args), dict(own_kwargs)
        else:
            call_args = (*args, *own_args)
            call_kwargs = {**own_kwargs, **kwargs} if kwargs else dict(own_kwargs)
        name = self["task"]
        task = registry.find(name)
        if task is not None:
            return [task._message(call_args, call_kwargs, **merged)]
        return [build_message(name, call_args, call_kwargs, **merged)]

    def __repr__(self) -> str:
        parts = [repr(a) for a in self.args]
        parts += [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"{'%' if self.immutable else ''}{self.task}({', '.join(parts)})"

    def __deepcopy__(self, memo: dict[int, Any]) -> Signature:
        sig = type(self).__new__(type(self))
        dict.update(sig, {k: copy.deepcopy(v, memo) for k, v in self.items()})
        return sig


def _copied(sig: dict[str, Any]) -> Signature:
    """A copy of a signature's structure (its options, argument lists, nested signatures),
    sharing the argument values themselves: what a clone may change is copied, and a group
    of 10,000 is copied in milliseconds."""
    copied = dict(sig)
    copied["args"] = list(sig.get("args") or ())
    copied["options"] = copy.deepcopy(sig.get("options") or {})
    kwargs = dict(sig.get("kwargs") or {})
    if sig.get("subtask_type"):
        for key in ("tasks", "header"):
            if isinstance(kwargs.get(key), list):
                kwargs[key] = [_copied(t) for t in kwargs[key]]
            elif isinstance(kwargs.get(key), dict):
                kwargs[key] = _copied(kwargs[key])
        if isinstance(kwargs.get("body"), dict):
            kwargs["body"] = _copied(kwargs["body"])
    copied["kwargs"] = kwargs
    return Signature.from_dict(copied)


def signature(varies: Any, args: Iterable[Any] | None = None,
              kwargs: dict[str, Any] | None = None, options: dict[str, Any] | None = None,
              **extra: Any) -> Signature:
    """A signature from a task name (or task) and its call, or from the dict of one (what a
    signature becomes in JSON): ``signature("proj.add", (2, 2), countdown=10)``."""
    if isinstance(varies, dict):
        return Signature.from_dict(varies)
    return Signature(varies, args, kwargs, options, **extra)


subtask = signature  # Celery's old name


def maybe_signature(value: Any) -> Signature | None:
    return None if value is None else Signature.from_dict(value)


def embedded(value: Any, what: str) -> tuple[dict[str, Any], ...]:
    """``link=``/``link_error=``/``chain=`` as the message carries them: signature dicts."""
    if not value:
        return ()
    items = [value] if isinstance(value, dict) else list(value)
    for item in items:
        if not isinstance(item, dict) or "task" not in item:
            raise TypeError(f"{what}= takes a signature (task.s(...)) or a list of them, "
                            f"not {item!r}.")
    return tuple(dict(Signature.from_dict(item)) for item in items)


# -- publishing -------------------------------------------------------------------------


def _publishing(store: ResultStore | None, alone: bool) -> AbstractContextManager[Any]:
    """The transaction a workflow is sent in: a chord's counter row and the messages of its
    members commit together (on Redis and RabbitMQ the messages wait in the outbox).
    ``alone``: nothing to commit with the messages (or eager mode): no transaction of ours."""
    alias = store.database_alias if store is not None else None
    return transaction.atomic(using=alias) if alias and not alone else nullcontext()


def _publish(messages: list[Message], eager: bool) -> None:
    """Hand a workflow's first messages to the broker, in batches; in eager mode run them
    here, in order."""
    if eager:
        from ..registry import registry

        for message in messages:
            registry.get(message.task)._apply_eager(message)
        return
    from ..publishing import publish_chunked

    publish_chunked(messages)
