"""The execution kernel: the one place that runs a task, with hook points around it.

A run goes through these points, in this order::

    before   each hook, in order; one that returns False stops the run (it settled it)
    around   context managers entered around the task's own code, in order
    (the task: arguments checked, the function called, an async one driven to its end,
     the value given the JSON round trip, an exception turned into FAILURE or RETRY)
    after    each hook, in reverse order (the last to go before is the first to go after)
    settle   each hook, in order: how the run ends (record the outcome? requeue for a
             retry? which follow-up messages to publish with it?)

A feature of execution is a :class:`Hook` that overrides the points it needs; the worker
(``worker/hooks.py``) and eager mode (:func:`eager_kernel`) each build a :class:`Kernel` from
their list of hooks. The kernel only calls the points a hook overrides, and allocates one
:class:`Run` per task, so a feature that is off costs nothing.

``after`` hooks also run when the run was interrupted (a cold shutdown raised into it);
``run.finished`` is then False and there is no outcome to report.
"""

from __future__ import annotations

import logging
import traceback as tb
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from . import serialization, states
from .calling import utcnow
from .exceptions import ColdShutdown, EncodeError, Retry, TaskTerminated
from .request import Request
from .result import TaskOutcome, exception_to_result

if TYPE_CHECKING:
    from .message import Message
    from .task import Task

logger = logging.getLogger("django_tasks.worker")


class ExceptionInfo:
    """Celery's ``einfo``: an exception with its type, traceback object and text."""

    __slots__ = ("exception", "traceback")

    def __init__(self, exception: BaseException, traceback: str | None = None) -> None:
        self.exception = exception
        self.traceback = traceback if traceback is not None else format_tb(exception)

    @property
    def type(self) -> type[BaseException]:
        return type(self.exception)

    @property
    def tb(self) -> TracebackType | None:
        return self.exception.__traceback__

    def __str__(self) -> str:
        return self.traceback

    def __repr__(self) -> str:
        return f"<ExceptionInfo: {self.exception!r}>"


@dataclass(slots=True, eq=False)
class Run:
    """One run of one task, as the hooks see and shape it."""

    task: Task[Any, Any]
    message: Message
    hostname: str
    attempts: int = 1
    is_eager: bool = False
    #: The worker's own record of the delivery (``worker.execute.Prepared``); None when eager.
    item: Any = None
    #: ``name[id]``, printable, for the log.
    label: str = ""
    request: Request | None = None
    outcome: TaskOutcome | None = None
    #: Set by the task itself: a retry was asked for, in this many seconds.
    retry_in: float | None = None
    #: The exception behind a FAILURE or RETRY (for a retry, its reason).
    exception: BaseException | None = None
    #: False until the task's code returned or raised (a cold shutdown interrupts it).
    finished: bool = False
    #: ``(soft, hard)`` seconds an async task's event loop enforces (the time-limit hook).
    loop_limits: tuple[float | None, float | None] = (None, None)
    soft_limit: float | None = None
    hard_limit: float | None = None
    #: ``time.monotonic()`` when the task started, for the hooks that time it.
    began: float = 0.0
    #: Acked before it ran (``acks_late=False``): only the outcome is left to write.
    acked: bool = False
    # -- decided at settlement ------------------------------------------------------------
    #: Store ``outcome`` (False for a success of an ``ignore_result`` task).
    record: bool = True
    #: The message to requeue for a retry.
    retry: Message | None = None
    #: Messages to publish with the outcome (callbacks, a chain's next link, a chord's
    #: callback): the worker writes them in the transaction that stores the outcome where
    #: the broker shares the result store's database, else just before the ack.
    follow_up: list[Message] | None = None
    #: Called in that same transaction, after the outcome is stored, with the result store
    #: (``followups.Continuation``: a chord member counted); each returns more messages to
    #: publish with the outcome.
    on_settle: list[Callable[..., Sequence[Message]]] | None = None

    def add_follow_up(self, message: Message) -> None:
        """Publish ``message`` with this run's outcome (see :attr:`follow_up`)."""
        if self.follow_up is None:
            self.follow_up = []
        self.follow_up.append(message)

    def add_on_settle(self, action: Callable[..., Sequence[Message]]) -> None:
        """Call ``action(store)`` in the outcome's transaction (see :attr:`on_settle`)."""
        if self.on_settle is None:
            self.on_settle = []
        self.on_settle.append(action)

    @property
    def einfo(self) -> ExceptionInfo | None:
        """Celery's ``einfo`` for a FAILURE or RETRY, else None."""
        if self.exception is None:
            return None
        text = self.outcome.traceback if self.outcome is not None else None
        return ExceptionInfo(self.exception, text)


class Hook:
    """A feature of task execution. Override the points it needs; the rest cost nothing."""

    def before(self, run: Run) -> bool | None:
        """Before the task runs; return False to stop here (this hook settled the run)."""
        return None

    def around(self, run: Run) -> AbstractContextManager[None] | None:
        """A context manager entered around the task's own code, or None. What it raises
        ends the run like an exception of the task (a time limit: FAILURE)."""
        return None

    def after(self, run: Run) -> None:
        """After the task ran (or was interrupted: ``run.finished`` is False)."""

    def settle(self, run: Run) -> None:
        """Decide how the run ends: ``run.record``, ``run.retry``, ``run.follow_up``."""


def _overrides(hook: Hook, point: str) -> bool:
    return getattr(type(hook), point) is not getattr(Hook, point)


class Kernel:
    """Runs tasks through a list of hooks."""

    def __init__(self, hooks: Sequence[Hook]) -> None:
        self.hooks = tuple(hooks)
        self._before = [h.before for h in self.hooks if _overrides(h, "before")]
        self._around = [h.around for h in self.hooks if _overrides(h, "around")]
        self._after = [h.after for h in reversed(self.hooks) if _overrides(h, "after")]
        self._settle = [h.settle for h in self.hooks if _overrides(h, "settle")]

    def run(self, run: Run) -> bool:
        """Run ``run`` through the hooks; False if a ``before`` hook stopped it."""
        task, message = run.task, run.message
        request = run.request = Request.from_message(
            message, hostname=run.hostname, attempts=run.attempts, is_eager=run.is_eager)
        # The request stays pushed for the hooks too: a base class's on_success() can read
        # self.request, as in Celery.
        token = task._push(request)
        try:
            for before in self._before:
                if before(run) is False:
                    return False
            try:
                self._execute(run)
            finally:
                for after in self._after:
                    after(run)
            for settle in self._settle:
                settle(run)
        finally:
            task._pop(token)
        return True

    def _guard(self, run: Run) -> AbstractContextManager[None] | None:
        guards = [g for around in self._around if (g := around(run)) is not None]
        if not guards:
            return None
        if len(guards) == 1:
            return guards[0]
        return _nested(guards)

    def _execute(self, run: Run) -> None:
        """The task itself. Never raises for the task's own errors: they become a FAILURE
        (or RETRY) outcome with the traceback."""
        task, message = run.task, run.message
        assert run.request is not None
        outcome = run.outcome = TaskOutcome(
            task_id=message.id, task_name=message.task, state=states.SUCCESS,
            args=message.args, kwargs=message.kwargs, queue=message.queue,
            worker=run.hostname, attempts=run.attempts, retries=message.retries,
            started_at=utcnow(), root_id=message.root_id or message.id,
            parent_id=message.parent_id, group_id=message.group,
        )
        try:
            if task.typing:
                task.check_arguments(message.args, message.kwargs)
            guard = self._guard(run) if self._around else None
            if guard is None:
                value = task._invoke(run.request, run.loop_limits)
            else:
                with guard:  # inside the try: a limit that fires is a FAILURE
                    value = task._invoke(run.request, run.loop_limits)
            # The value as a reader will see it (a tuple comes back a list); None, a bool or
            # a 64-bit int comes back as it is.
            if not (value is None or value is True or value is False
                    or (type(value) is int and -2**63 <= value < 2**63)):
                try:
                    value = serialization.loads(
                        serialization.dumps(value, f"return value of {task.name}"))
                except EncodeError as exc:
                    raise exc from None
            outcome.result = value
        except Retry as retry:
            outcome.state = states.RETRY
            run.retry_in = retry.when or 0.0
            reason = retry.exc if retry.exc is not None else retry
            outcome.result = exception_to_result(reason)
            outcome.traceback = format_tb(reason)
            run.exception = reason
        except ColdShutdown:
            raise  # the worker stopping the task, not the task failing
        except BaseException as exc:
            if run.is_eager and not isinstance(exc, Exception):
                raise  # Ctrl-C or sys.exit() around an eager call is the caller's
            # sys.exit() and KeyboardInterrupt raised by a task end it like any error: they
            # must not take the worker down, nor send the message back uncounted for ever.
            # revoke(terminate=True) stopped it: REVOKED, as the row already says
            outcome.state = states.REVOKED if isinstance(exc, TaskTerminated) \
                else states.FAILURE
            outcome.result = exception_to_result(exc)
            outcome.traceback = format_tb(exc)
            outcome.exception = exc
            run.exception = exc
        outcome.date_done = utcnow()
        run.finished = True


@contextmanager
def _nested(guards: list[AbstractContextManager[None]]) -> Iterator[None]:
    with ExitStack() as stack:
        for guard in guards:
            stack.enter_context(guard)
        yield


def format_tb(exc: BaseException) -> str:
    return "".join(tb.format_exception(type(exc), exc, exc.__traceback__))


# -- the task's own hooks (Celery's Task methods) ------------------------------------------


def call_handler(run: Run, name: str, *args: Any) -> None:
    """Call the task's ``name`` method; one that raises is logged, never breaks the run."""
    try:
        getattr(run.task, name)(*args)
    except Exception:
        logger.exception("%s.%s() of task %s[%s] raised; the task's outcome stands",
                         type(run.task).__name__, name, run.message.task, run.message.id)


class TaskHandlers(Hook):
    """``before_start()`` before the task, and ``on_success()``, ``on_failure()`` or
    ``on_retry()`` after it, where the task (its base class, or an option) defines them."""

    def before(self, run: Run) -> bool | None:
        if "before_start" in run.task.handlers:
            message = run.message
            call_handler(run, "before_start", message.id, message.args, message.kwargs)
        return None

    def after(self, run: Run) -> None:
        handlers = run.task.handlers
        if not handlers or not run.finished:
            return
        outcome, message = run.outcome, run.message
        assert outcome is not None
        if outcome.state == states.SUCCESS:
            if "on_success" in handlers:
                call_handler(run, "on_success", outcome.result, message.id, message.args,
                             message.kwargs)
        elif outcome.state == states.RETRY:
            if "on_retry" in handlers:
                call_handler(run, "on_retry", run.exception, message.id, message.args,
                             message.kwargs, run.einfo)
        elif "on_failure" in handlers:
            call_handler(run, "on_failure", run.exception, message.id, message.args,
                         message.kwargs, run.einfo)


class AfterReturn(Hook):
    """``after_return()``, after the outcome's own handler and signal (as in Celery)."""

    def after(self, run: Run) -> None:
        if "after_return" not in run.task.handlers or not run.finished:
            return
        outcome, message = run.outcome, run.message
        assert outcome is not None
        call_handler(run, "after_return", outcome.state, outcome.result, message.id,
                     message.args, message.kwargs, run.einfo)


_eager: Kernel | None = None


def eager_kernel() -> Kernel:
    """The kernel of eager mode and ``Task.apply()``: the task's own handlers, no signals."""
    global _eager
    if _eager is None:
        from .followups import Workflow

        # After hooks run in reverse: on_success() and kin first, then after_return().
        _eager = Kernel([AfterReturn(), TaskHandlers(), Workflow()])
    return _eager


def run_message(task: Task[Any, Any], message: Message, *, worker: str, attempts: int = 1,
                is_eager: bool = False,
                limits: tuple[float | None, float | None] = (None, None),
                ) -> tuple[TaskOutcome, float | None]:
    """Run one decoded message through the eager kernel; return its outcome and, for a
    retry, the delay in seconds. ``limits`` are the (soft, hard) limits of an async task."""
    run = Run(task, message, worker, attempts, is_eager, loop_limits=limits)
    eager_kernel().run(run)
    assert run.outcome is not None
    return run.outcome, run.retry_in
