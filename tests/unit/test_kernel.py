"""The execution kernel on the memory broker: hook order, signals with Celery's arguments,
the task's own handlers, receivers and handlers that raise, follow-up messages."""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.dispatch import Signal

from django_tasks import Task, shared_task, signals, states
from django_tasks.conf import get_broker, get_result_store
from django_tasks.kernel import ExceptionInfo, Hook, Kernel, Run, eager_kernel
from django_tasks.message import Message
from django_tasks.registry import registry
from django_tasks.task import build_message
from django_tasks.worker import hooks
from django_tasks.worker.consumer import Consumer

calls: list[Any] = []


class Recorded(Task[Any, Any]):
    """A base class with every Celery hook, recording each call."""

    max_retries = 1

    def before_start(self, task_id: str, args: Any, kwargs: Any) -> None:
        calls.append(("before_start", task_id, args, kwargs))

    def on_success(self, retval: Any, task_id: str, args: Any, kwargs: Any) -> None:
        calls.append(("on_success", retval, task_id, args, kwargs, self.request.id))

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any,
                   einfo: Any) -> None:
        calls.append(("on_failure", type(exc).__name__, task_id, type(einfo).__name__))

    def on_retry(self, exc: BaseException, task_id: str, args: Any, kwargs: Any,
                 einfo: Any) -> None:
        calls.append(("on_retry", type(exc).__name__, task_id))

    def after_return(self, status: str, retval: Any, task_id: str, args: Any, kwargs: Any,
                     einfo: Any) -> None:
        calls.append(("after_return", status, task_id))


@shared_task(name="unit.kernel.add", base=Recorded)
def add(x: int, y: int) -> int:
    calls.append(("run", x, y))
    return x + y


@shared_task(name="unit.kernel.boom", base=Recorded)
def boom() -> None:
    calls.append(("run",))
    raise ValueError("boom")


@shared_task(name="unit.kernel.again", base=Recorded, autoretry_for=(KeyError,),
             default_retry_delay=0)
def again() -> None:
    calls.append(("run",))
    raise KeyError("again")


@shared_task(name="unit.kernel.plain")
def plain(x: int) -> int:
    return x


SIGNALS = ("task_received", "task_prerun", "task_success", "task_failure", "task_retry",
           "task_postrun", "task_revoked", "task_rejected")


@pytest.fixture(autouse=True)
def _memory(memory_tasks: None) -> Iterator[None]:
    calls.clear()
    yield
    calls.clear()


@pytest.fixture
def received() -> Iterator[list[tuple[str, Any, dict[str, Any]]]]:
    """Every task signal sent, as (name, sender, arguments)."""
    seen: list[tuple[str, Any, dict[str, Any]]] = []
    receivers: list[tuple[Signal, Callable[..., None]]] = []
    for name in SIGNALS:
        def receiver(sender: Any, name: str = name, **kwargs: Any) -> None:
            kwargs.pop("signal")
            seen.append((name, sender, kwargs))
            calls.append((name,))
        signal = getattr(signals, name)
        signal.connect(receiver, weak=False)
        receivers.append((signal, receiver))
    yield seen
    for signal, receiver in receivers:
        signal.disconnect(receiver)


def teardown_module() -> None:
    for name in ("add", "boom", "again", "plain"):
        registry.unregister(f"unit.kernel.{name}")


def consumer() -> Consumer:
    return Consumer(queues=["default"], owner="test/1", hostname="test@host", prefetch=16,
                    lease=30, stop=threading.Event())


def send(message: Message) -> str:
    store = get_result_store()
    assert store is not None
    store.create_pending([message])
    get_broker().publish([message])
    return message.id


def drain(c: Consumer | None = None) -> Consumer:
    c = c or consumer()
    c.process(get_broker().fetch(["default"], c.owner, 16, 30))
    return c


def state(task_id: str) -> str | None:
    store = get_result_store()
    assert store is not None
    meta = store.get(task_id)
    return meta.state if meta else None


# -- order ------------------------------------------------------------------------------


def test_a_success_goes_through_the_hooks_in_celerys_order(received: list[Any]) -> None:
    task_id = send(build_message(add.name, (2, 3), {}))
    drain()
    assert [c[0] for c in calls] == [
        "task_received", "task_prerun", "before_start", "run", "on_success", "task_success",
        "after_return", "task_postrun"]
    assert calls[4] == ("on_success", 5, task_id, (2, 3), {}, task_id)  # self.request is set
    assert state(task_id) == states.SUCCESS


def test_a_failure_and_a_retry_call_their_own_handlers(received: list[Any]) -> None:
    failed = send(build_message(boom.name, (), {}))
    drain()
    assert [c[0] for c in calls] == [
        "task_received", "task_prerun", "before_start", "run", "on_failure", "task_failure",
        "after_return", "task_postrun"]
    assert calls[4] == ("on_failure", "ValueError", failed, "ExceptionInfo")
    assert ("after_return", states.FAILURE, failed) in calls
    calls.clear()
    retried = send(build_message(again.name, (), {}))
    drain()
    assert [c[0] for c in calls][3:] == ["run", "on_retry", "task_retry", "after_return",
                                         "task_postrun"]
    assert state(retried) == states.RETRY


# -- signals with Celery's arguments ----------------------------------------------------


def test_signals_carry_celerys_arguments(received: list[Any]) -> None:
    ok = send(build_message(add.name, (1, 1), {}))
    drain()
    by_name = {name: (sender, kwargs) for name, sender, kwargs in received}
    sender, kwargs = by_name["task_received"]
    assert isinstance(sender, Consumer) and kwargs["request"].id == ok
    assert by_name["task_prerun"] == (add, {"task_id": ok, "task": add, "args": (1, 1),
                                            "kwargs": {}})
    assert by_name["task_success"] == (add, {"result": 2})
    sender, kwargs = by_name["task_postrun"]
    assert sender is add
    assert kwargs == {"task_id": ok, "task": add, "args": (1, 1), "kwargs": {}, "retval": 2,
                      "state": states.SUCCESS}

    received.clear()
    failed = send(build_message(boom.name, (), {}))
    drain()
    [(sender, kwargs)] = [(s, k) for n, s, k in received if n == "task_failure"]
    assert sender is boom
    assert set(kwargs) >= {"task_id", "exception", "args", "kwargs", "traceback", "einfo"}
    assert kwargs["task_id"] == failed and isinstance(kwargs["exception"], ValueError)
    assert isinstance(kwargs["einfo"], ExceptionInfo)
    assert kwargs["einfo"].type is ValueError and kwargs["einfo"].tb is not None
    assert "ValueError: boom" in kwargs["traceback"]

    received.clear()
    send(build_message(again.name, (), {}))
    drain()
    [(sender, kwargs)] = [(s, k) for n, s, k in received if n == "task_retry"]
    assert sender is again
    assert isinstance(kwargs["reason"], KeyError)
    assert kwargs["request"].task == again.name and kwargs["einfo"].type is KeyError


def test_an_expired_message_sends_revoked_and_rejected(received: list[Any]) -> None:
    import datetime as dt

    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    task_id = send(build_message(plain.name, (1,), {}, expires=past))
    drain()
    names = [name for name, _, _ in received]
    assert names == ["task_rejected", "task_revoked"]
    revoked = received[1][2]
    assert received[1][1] is plain
    assert revoked["expired"] is True and revoked["terminated"] is False
    assert revoked["signum"] is None and revoked["request"].id == task_id
    assert isinstance(received[0][2]["exc"], Exception)


def test_a_receiver_or_a_handler_that_raises_is_logged_and_the_task_stands(
        define: Callable[..., Any], caplog: pytest.LogCaptureFixture) -> None:
    def broken(**kwargs: Any) -> None:
        raise RuntimeError("receiver bug")

    def bad_success(self: Task[Any, Any], retval: Any, *args: Any) -> None:
        raise RuntimeError("handler bug")

    fine = define(name="unit.kernel.fine", on_success=bad_success)(lambda: "fine")
    for name in SIGNALS:
        getattr(signals, name).connect(broken)
    try:
        task_id = send(build_message(fine.name, (), {}))
        drain()
    finally:
        for name in SIGNALS:
            getattr(signals, name).disconnect(broken)
    store = get_result_store()
    assert store is not None
    meta = store.get(task_id)
    assert meta is not None and meta.state == states.SUCCESS and meta.result == "fine"
    assert "receiver bug" in caplog.text
    assert "on_success() of task unit.kernel.fine" in caplog.text and "handler bug" in caplog.text


# -- handlers as options, base classes, eager mode --------------------------------------


def test_handlers_passed_as_options_are_called_like_methods(
        define: Callable[..., Any]) -> None:
    seen: list[Any] = []

    def on_failure(self: Task[Any, Any], exc: BaseException, task_id: str, args: Any,
                   kwargs: Any, einfo: Any) -> None:
        seen.append((self.name, type(exc).__name__, args))

    def fails(x: int) -> None:
        raise LookupError(x)

    task = define(name="unit.kernel.fails", on_failure=on_failure)(fails)
    assert task.handlers == frozenset({"on_failure"})
    send(build_message(task.name, (7,), {}))
    drain()
    assert seen == [("unit.kernel.fails", "LookupError", (7,))]


def test_a_base_class_gives_its_class_attributes_as_defaults() -> None:
    assert isinstance(add, Recorded)
    assert add.max_retries == 1
    assert plain.handlers == frozenset()


def test_base_must_be_a_task_subclass() -> None:
    from django_tasks.exceptions import ConfigurationError

    with pytest.raises(ConfigurationError, match=r"subclass of django_tasks\.Task"):
        shared_task(base=object)


def test_eager_apply_calls_the_handlers_but_sends_no_signals(received: list[Any]) -> None:
    result = add.apply((4, 4))
    assert result.get() == 8
    assert [c[0] for c in calls] == ["before_start", "run", "on_success", "after_return"]
    assert received == []


# -- the kernel itself ------------------------------------------------------------------


class Tracing(Hook):
    def __init__(self, name: str, stop: bool = False) -> None:
        self.name, self.stop = name, stop

    def before(self, run: Run) -> bool | None:
        calls.append(f"{self.name}.before")
        return False if self.stop else None

    def after(self, run: Run) -> None:
        calls.append(f"{self.name}.after")

    def settle(self, run: Run) -> None:
        calls.append(f"{self.name}.settle")
        run.add_follow_up(build_message(plain.name, (run.outcome.result,), {}))  # type: ignore[union-attr]


def test_after_hooks_run_in_reverse_and_a_before_hook_can_stop_the_run() -> None:
    message = build_message(plain.name, (5,), {})
    run = Run(plain, message, "here")
    assert Kernel([Tracing("a"), Tracing("b")]).run(run) is True
    assert calls == ["a.before", "b.before", "b.after", "a.after", "a.settle", "b.settle"]
    assert run.outcome is not None and run.outcome.result == 5
    assert [m.args for m in run.follow_up or []] == [(5,), (5,)]
    calls.clear()
    stopped = Run(plain, message, "here")
    assert Kernel([Tracing("a", stop=True), Tracing("b")]).run(stopped) is False
    assert calls == ["a.before"] and stopped.outcome is None


def test_follow_up_messages_are_published_with_the_outcome() -> None:
    class FollowUp(Hook):
        def settle(self, run: Run) -> None:
            if run.message.task == add.name:
                run.add_follow_up(build_message(plain.name, (run.outcome.result,), {}))  # type: ignore[union-attr]

    c = consumer()
    c.kernel = Kernel([*c.kernel.hooks, FollowUp()])
    task_id = send(build_message(add.name, (20, 22), {}))
    drain(c)
    assert state(task_id) == states.SUCCESS
    [delivery] = get_broker().fetch(["default"], "other", 10, 30)
    follow_up = Message.decode(delivery.body)
    assert follow_up.task == plain.name and follow_up.args == (42,)


def test_the_worker_kernel_lists_its_features_in_order() -> None:
    names = [type(h).__name__ for h in hooks.worker_kernel(consumer()).hooks]
    assert names.index("AcksEarly") < names.index("TrackStarted") < names.index("TimeLimits")
    assert names.index("TimeLimits") < names.index("RunningSlot") < names.index("RunSignals")
    assert eager_kernel() is eager_kernel()


# -- bind=True through functools.wraps ---------------------------------------------------


def logged(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)
    return wrapper


def test_bind_through_a_wrapping_decorator_finds_self(define: Callable[..., Any]) -> None:
    @logged
    def whoami(self: Task[Any, Any], x: int) -> str:
        return f"{self.name}:{self.request.id}:{x}"

    task = define(name="unit.kernel.whoami", bind=True)(whoami)
    task_id = send(build_message(task.name, (3,), {}))
    drain()
    store = get_result_store()
    assert store is not None
    meta = store.get(task_id)
    assert meta is not None and meta.result == f"unit.kernel.whoami:{task_id}:3"

    def self_adding(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(self: Task[Any, Any], *args: Any) -> Any:
            return (self.name, fn(*args))
        return wrapper

    @self_adding
    def doubled(x: int) -> int:
        return 2 * x

    task = define(name="unit.kernel.doubled", bind=True)(doubled)
    assert task.apply((4,)).get() == ["unit.kernel.doubled", 8]


# -- smaller features ---------------------------------------------------------------------


def test_throws_logs_an_expected_error_at_info_without_a_traceback(
        define: Callable[..., Any], caplog: pytest.LogCaptureFixture) -> None:
    def refuse() -> None:
        raise PermissionError("not yours")

    task = define(name="unit.kernel.refuse", throws=(PermissionError,))(refuse)
    caplog.set_level(logging.INFO, "django_tasks.worker")
    task_id = send(build_message(task.name, (), {}))
    drain()
    assert state(task_id) == states.FAILURE
    [record] = [r for r in caplog.records if "raised expected" in r.getMessage()]
    assert record.levelno == logging.INFO and "not yours" in record.getMessage()
    assert not any(r.levelno >= logging.ERROR and task_id in r.getMessage()
                   for r in caplog.records)


def test_a_revoked_message_sends_task_revoked(received: list[Any]) -> None:
    message = build_message(plain.name, (1,), {})
    send(message)
    store = get_result_store()
    assert store is not None
    assert store.revoke(message.id)
    drain()
    [(_, sender, kwargs)] = [r for r in received if r[0] == "task_revoked"]
    assert sender is plain and kwargs["expired"] is False
    assert kwargs["request"].id == message.id


def test_a_worker_can_be_a_signal_sender() -> None:
    from django_tasks.worker.main import Worker

    seen: list[Any] = []

    def ready(sender: Any, **kwargs: Any) -> None:
        seen.append(sender)

    worker = Worker(pool="solo", queues=["default"])
    signals.worker_ready.connect(ready)
    try:
        signals.send(signals.worker_ready, worker)
    finally:
        signals.worker_ready.disconnect(ready)
    assert seen == [worker]
