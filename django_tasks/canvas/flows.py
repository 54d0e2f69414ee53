"""``chain``, ``group`` and ``chord``: signatures of many calls."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..conf import task_settings
from ..message import new_id
from .signatures import Signature, embedded, maybe_signature

if TYPE_CHECKING:
    from ..group_result import GroupResult
    from ..message import Message
    from ..result import AsyncResult
    from ..results.base import ResultStore


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

    def writes_rows(self) -> bool:
        steps = self._steps()
        return bool(steps) and steps[0].writes_rows()

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

    def writes_rows(self) -> bool:
        return any(task.writes_rows() for task in self.tasks)

    def freeze(self, _id: str | None = None) -> GroupResult:
        from ..group_result import GroupResult

        group_id = _id or self.options.get("task_id") or new_id()
        self.options["task_id"] = group_id
        tasks = self.tasks
        results = [task.freeze() for task in tasks]
        self["kwargs"]["tasks"] = tasks
        return GroupResult(group_id, results)

    def messages(self, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None,
                 store: ResultStore | None = None, **options: Any) -> list[Message]:
        merged = {**self.options, **options}
        group_id = merged.pop("group_id", None) or merged.pop("task_id", None) or new_id()
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

    def writes_rows(self) -> bool:
        return True

    def link(self, callback: dict[str, Any]) -> dict[str, Any]:
        """A chord's callback is its body's: ``link`` runs after the body."""
        return self._body_ref().link(callback)

    def link_error(self, errback: dict[str, Any]) -> dict[str, Any]:
        """Runs when the chord fails (a member failed, or the body did)."""
        return self._body_ref().link_error(errback)

    def _body_ref(self) -> Signature:
        body = self.body
        if body is None:
            raise TypeError("A chord needs a callback: chord(header, callback).")
        self["kwargs"]["body"] = body
        return body

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
        from ..results.workflows import workflows

        merged = {**self.options, **options}
        header, body = self.header, self.body
        if body is None:
            raise TypeError("A chord needs a callback: chord(header, callback).")
        # Its own id (frozen), not that of a group it is a member of.
        group_id = self.options.get("group_id") or merged.pop("group_id", None) or new_id()
        merged.pop("group_id", None)
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
