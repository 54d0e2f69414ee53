"""Workflows, as in Celery: signatures, ``chain``, ``group`` and ``chord``.

A :class:`Signature` is a task call written down: the task's name, its arguments, its call
options. It is a ``dict`` in Celery's shape (``task``, ``args``, ``kwargs``, ``options``,
``subtask_type``, ``immutable``, ``chord_size``), so it travels in a message as JSON and
comes back as itself (:func:`signature`).

Nothing here waits or polls. A workflow is applied as messages: the first tasks' messages
carry the rest in Celery's protocol v2 ``embed`` (``callbacks``, ``errbacks``, ``chain``,
``chord``), and the worker turns them into follow-up messages when it settles each task, in
the transaction that stores its outcome (``followups.py``). A chord's members are counted in
one database row (``results/workflows.py``); the member that completes the count publishes
the callback.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

from django.db import transaction

from .conf import get_result_store, task_settings

if TYPE_CHECKING:
    from .group_result import GroupResult
    from .message import Message
    from .result import AsyncResult
    from .results.base import ResultStore

#: Options that name where a call sits in a workflow; a clone keeps them only if asked.
_WORKFLOW_OPTIONS = ("task_id", "group_id", "chord", "parent_id", "root_id")


def _new_id() -> str:
    return str(uuid.uuid4())


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
        from .registry import registry

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
        from .result import AsyncResult

        if _id is not None:
            self.options["task_id"] = _id
        self.options.setdefault("task_id", _new_id())
        return AsyncResult(self.options["task_id"], self.task)

    def __or__(self, other: Any) -> Signature:  # type: ignore[override]
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
        with _publishing(store, eager):
            _publish(sig.messages(tuple(args or ()), dict(kwargs or {}), store), eager)
        return result

    def _args(self, args: Sequence[Any]) -> tuple[Any, ...]:
        return self.args if self.immutable else (*args, *self.args)

    def messages(self, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None,
                 store: ResultStore | None = None, **options: Any) -> list[Message]:
        """The messages that start this call with ``args`` put first; a chord writes its
        counter row through ``store`` too (in the caller's transaction)."""
        from .calling import build_message
        from .registry import registry

        merged = {**self.options, **options}
        merged.pop("chord_size", None)
        call_kwargs = self.kwargs if self.immutable else {**self.kwargs, **(kwargs or {})}
        call_args = self._args(args)
        if self.task in registry:
            return [registry.get(self.task)._message(call_args, call_kwargs, **merged)]
        return [build_message(self.task, call_args, call_kwargs, **merged)]

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


# -- chains ------------------------------------------------------------------------------


class chain(Signature):
    """Tasks run one after another, each given the result of the one before:
    ``chain(add.s(2, 2), multiply.s(4))`` or ``add.s(2, 2) | multiply.s(4)``. A group
    followed by a task becomes a chord."""

    subtask_type_name = "chain"

    def __init__(self, *tasks: Any, **options: Any) -> None:
        if len(tasks) == 1 and not isinstance(tasks[0], dict):
            tasks = tuple(tasks[0])  # chain([a, b]) or chain(generator)
        flat: list[Signature] = []
        for task in tasks:
            sig = Signature.from_dict(task)
            flat.extend(sig.tasks if isinstance(sig, chain) else [sig])
        super().__init__("celery.chain", (), {"tasks": flat}, options)

    @property
    def tasks(self) -> list[Signature]:
        return [Signature.from_dict(t) for t in self["kwargs"]["tasks"]]

    def _steps(self) -> list[Signature]:
        """The tasks, a group followed by something made a chord (as Celery does)."""
        tasks, steps = self.tasks, []
        while tasks:
            head = tasks.pop(0)
            if isinstance(head, group) and tasks:
                head = chord(head, tasks.pop(0))
            steps.append(head)
        return steps

    def freeze(self, _id: str | None = None) -> Any:
        """Give every task its id; the last one's result, its ``parent`` the one before."""
        steps = self._steps()
        if not steps:
            raise ValueError("An empty chain has nothing to run.")
        result: Any = None
        for index, step in enumerate(steps):
            last = index == len(steps) - 1
            frozen = step.freeze(_id if last else None)
            if result is not None:
                frozen._parent = result
            result = frozen
        self["kwargs"]["tasks"] = steps
        return result

    def link(self, callback: dict[str, Any]) -> dict[str, Any]:
        """The callback of the chain is the callback of its last task."""
        self.tasks_ref()[-1].link(callback)
        return callback

    def link_error(self, errback: dict[str, Any]) -> dict[str, Any]:
        """An errback of the chain is attached to every task of it, as in Celery."""
        for task in self.tasks_ref():
            task.link_error(errback)
        return errback

    def tasks_ref(self) -> list[Signature]:
        tasks = self["kwargs"]["tasks"] = self.tasks
        return tasks

    def messages(self, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None,
                 store: ResultStore | None = None, **options: Any) -> list[Message]:
        steps = self._steps()
        incoming = list(embedded(options.pop("chain", None), "chain"))
        member = {k: options.pop(k) for k in ("group_id", "chord") if k in options}
        if member:  # a chord's member: the last task is the one counted
            if isinstance(steps[-1], group | chord):
                raise NotImplementedError("A chain that ends in a group or a chord cannot be "
                                          "a member of a group or a chord.")
            steps[-1] = steps[-1].clone(**member)
        rest = [dict(s) for s in reversed(steps[1:])]
        return steps[0].messages(args, kwargs, store, chain=[*incoming, *rest],
                                 **{**self.options, **options})

    def __repr__(self) -> str:
        return " | ".join(repr(t) for t in self.tasks)


# -- groups and chords ---------------------------------------------------------------------


class group(Signature):
    """Tasks run side by side: ``group(add.s(i, i) for i in range(10))``. Applying it returns
    a :class:`~django_tasks.group_result.GroupResult`. Its messages and result rows are
    written in batches."""

    subtask_type_name = "group"

    def __init__(self, *tasks: Any, **options: Any) -> None:
        if len(tasks) == 1 and not isinstance(tasks[0], dict):
            tasks = tuple(tasks[0])
        flat: list[Signature] = []
        for task in tasks:
            sig = Signature.from_dict(task)
            flat.extend(sig.tasks if isinstance(sig, group) else [sig])
        super().__init__("celery.group", (), {"tasks": flat}, options)

    @property
    def tasks(self) -> list[Signature]:
        return [Signature.from_dict(t) for t in self["kwargs"]["tasks"]]

    def __len__(self) -> int:
        return len(self["kwargs"]["tasks"])

    def freeze(self, _id: str | None = None) -> GroupResult:
        from .group_result import GroupResult

        group_id = _id or self.options.get("task_id") or _new_id()
        self.options["task_id"] = group_id
        tasks = self.tasks
        results = [task.freeze() for task in tasks]
        self["kwargs"]["tasks"] = tasks
        return GroupResult(group_id, results)

    def messages(self, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None,
                 store: ResultStore | None = None, **options: Any) -> list[Message]:
        merged = {**self.options, **options}
        group_id = merged.pop("group_id", None) or merged.pop("task_id", None) or _new_id()
        merged.pop("task_id", None)
        if merged.pop("chain", None):
            raise NotImplementedError("A group cannot be followed in a chain by nothing but "
                                      "a task; chain(group, task) makes a chord.")
        found: list[Message] = []
        for task in self.tasks:
            found += task.messages(args, kwargs, store, **{**merged, "group_id": group_id})
        return found

    def apply_async(self, args: Iterable[Any] | None = None,
                    kwargs: dict[str, Any] | None = None, **options: Any) -> GroupResult:
        return super().apply_async(args, kwargs, **options)

    def __or__(self, other: Any) -> Signature:  # type: ignore[override]
        if isinstance(other, Signature) and not isinstance(other, group):
            return chord(self, other)
        return super().__or__(other)

    def __repr__(self) -> str:
        return f"group([{', '.join(repr(t) for t in self.tasks)}])"


class chord(Signature):
    """A group whose results, in order, are given to a callback once every member has
    succeeded: ``chord([add.s(i, i) for i in range(10)], tsum.s())``. If a member fails, the
    callback never runs: its result is FAILURE (a ``ChordError`` naming the member) and its
    ``link_error`` errbacks run."""

    subtask_type_name = "chord"

    def __init__(self, header: Any, body: Any = None, **options: Any) -> None:
        members = header if isinstance(header, group) else group(header)
        super().__init__("celery.chord", (), {
            "header": members, "body": None if body is None else Signature.from_dict(body),
            "kwargs": {}}, options)

    @property
    def tasks(self) -> list[Signature]:
        return self.header.tasks

    @property
    def header(self) -> group:
        return Signature.from_dict(self["kwargs"]["header"])  # type: ignore[return-value]

    @property
    def body(self) -> Signature | None:
        return maybe_signature(self["kwargs"]["body"])

    def __call__(self, body: Any = None, **options: Any) -> Any:
        """``chord(header)(callback)``: apply it with this callback."""
        return self.apply_async((), body=body, **options)

    def freeze(self, _id: str | None = None) -> AsyncResult:
        header, body = self.header, self.body
        if body is None:
            raise TypeError("A chord needs a callback: chord(header, callback).")
        group_result = header.freeze(self.options.get("group_id"))
        result = body.freeze(_id)
        result._parent = group_result
        self["kwargs"]["header"], self["kwargs"]["body"] = header, body
        self.options["group_id"] = group_result.id
        return result

    def apply_async(self, args: Iterable[Any] | None = None,
                    kwargs: dict[str, Any] | None = None, body: Any = None,
                    **options: Any) -> Any:
        sig: Signature = self
        if body is not None:
            sig = self.clone()
            sig["kwargs"]["body"] = Signature.from_dict(body)
        return sig._apply(args, kwargs, options, eager=task_settings.ALWAYS_EAGER)

    def messages(self, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None,
                 store: ResultStore | None = None, **options: Any) -> list[Message]:
        from .results.workflows import workflows

        merged = {**self.options, **options}
        header, body = self.header, self.body
        if body is None:
            raise TypeError("A chord needs a callback: chord(header, callback).")
        group_id = merged.pop("group_id", None) or _new_id()
        merged.pop("task_id", None)
        incoming = merged.pop("chain", None)
        for key in ("parent_id", "root_id"):  # the callback is queued by its last member
            merged.pop(key, None)
        body = body.clone()
        body.freeze()
        if incoming:  # what follows the chord in a chain follows its callback
            body.options["chain"] = [*embedded(incoming, "chain"),
                                     *embedded(body.options.get("chain"), "chain")]
        tasks = header.tasks
        if not tasks:  # nothing to wait for: the callback gets an empty list at once
            return body.messages(([],), {}, store, **_ids(options))
        member_ids = [t.freeze() for t in tasks]
        found: list[Message] = []
        for task in tasks:
            found += task.messages(args, kwargs, store, **{
                **merged, **_ids(options), "group_id": group_id, "chord": dict(body),
                "ignore_result": False})
        workflows(store).save_group(group_id, [r.id for r in member_ids],
                                    callback=dict(body), callback_id=body.id)
        return found

    def __repr__(self) -> str:
        return f"chord({self.header!r}, {self.body!r})"


def _ids(options: dict[str, Any]) -> dict[str, Any]:
    return {k: options[k] for k in ("parent_id", "root_id") if k in options}


# -- publishing -------------------------------------------------------------------------


def _publishing(store: ResultStore | None, eager: bool) -> AbstractContextManager[Any]:
    """The transaction a workflow is sent in: a chord's counter row and the messages of its
    members commit together (on Redis and RabbitMQ the messages wait in the outbox)."""
    alias = store.database_alias if store is not None else None
    return transaction.atomic(using=alias) if alias and not eager else nullcontext()


def _publish(messages: list[Message], eager: bool) -> None:
    """Hand a workflow's first messages to the broker, in batches; in eager mode run them
    here, in order."""
    if eager:
        from .registry import registry

        for message in messages:
            registry.get(message.task)._apply_eager(message)
        return
    from .publishing import publish_chunked

    publish_chunked(messages)
