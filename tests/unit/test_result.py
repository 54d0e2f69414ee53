"""``AsyncResult`` on the memory result store: states, values, and errors raised by ``get()``."""

from __future__ import annotations

import builtins
import datetime as dt
import time
from typing import Any

import pytest
from django.test import override_settings

from django_tasks import (
    AsyncResult,
    ResultBackendDisabled,
    TaskRevokedError,
    TimeoutError,
    serialization,
    states,
)
from django_tasks.conf import get_result_store
from django_tasks.exceptions import RemoteTaskError
from django_tasks.message import Message
from django_tasks.result import TaskOutcome, exception_to_result, result_to_exception

pytestmark = pytest.mark.usefixtures("memory_tasks")


class InvoiceMissing(Exception):
    pass


class Outer:
    class NestedError(Exception):
        pass


def store(task_id: str, state: str, result: Any = None, **extra: Any) -> AsyncResult:
    get_result_store().store_outcomes([TaskOutcome(
        task_id=task_id, task_name="unit.result.task", state=state, result=result,
        date_done=dt.datetime.now(dt.UTC) if state in states.READY_STATES else None, **extra,
    )])
    return AsyncResult(task_id)


def failed(task_id: str, exc: BaseException) -> AsyncResult:
    return store(task_id, states.FAILURE, exception_to_result(exc), traceback="Traceback ...")


def test_unknown_id_is_pending() -> None:
    result = AsyncResult("nobody")
    assert result.state == result.status == states.PENDING
    assert not result.ready() and not result.successful() and not result.failed()
    assert result.result is None
    assert not result.exists()


@pytest.mark.parametrize(
    ("state", "ready", "successful", "failed"),
    [
        (states.PENDING, False, False, False),
        (states.STARTED, False, False, False),
        (states.RETRY, False, False, False),
        (states.SUCCESS, True, True, False),
        (states.FAILURE, True, False, True),
        (states.REVOKED, True, False, False),
    ],
)
def test_state_predicates(state: str, ready: bool, successful: bool, failed: bool) -> None:
    result = store("t", state)
    assert result.state == state
    assert (result.ready(), result.successful(), result.failed()) == (ready, successful, failed)


def test_success_value_and_metadata() -> None:
    result = store("ok", states.SUCCESS, {"total": 3}, worker="w@host", queue="mail")
    assert result.get() == {"total": 3}
    assert result.result == result.info == {"total": 3}
    assert result.name == "unit.result.task"
    assert result.date_done is not None
    assert result.traceback is None
    assert result.exists()


def test_id_equality_and_repr() -> None:
    assert AsyncResult("a") == AsyncResult("a") != AsyncResult("b")
    assert len({AsyncResult("a"), AsyncResult("a")}) == 1
    assert repr(AsyncResult("a")) == "<AsyncResult: a>"


def test_a_ready_state_is_cached() -> None:
    result = store("cached", states.SUCCESS, 1)
    assert result.state == states.SUCCESS
    get_result_store().forget("cached")
    assert result.get() == 1  # a final state never changes, so no second look-up


def test_an_unready_state_is_looked_up_again() -> None:
    result = store("moving", states.STARTED)
    assert result.state == states.STARTED
    store("moving", states.SUCCESS, 2)
    assert result.state == states.SUCCESS and result.get() == 2


@pytest.mark.parametrize(
    "exc",
    [ValueError("bad value"), ZeroDivisionError("zero"), RuntimeError("it's 'quoted'"),
     InvoiceMissing("invoice 7 is gone")],
    ids=["ValueError", "ZeroDivisionError", "RuntimeError", "test-module-class"],
)
def test_get_raises_the_original_exception_type(exc: Exception) -> None:
    result = failed("f", exc)
    with pytest.raises(type(exc)) as info:
        result.get()
    assert type(info.value) is type(exc)
    assert str(info.value) == str(exc)


def test_get_raises_key_error_with_its_own_message() -> None:
    with pytest.raises(KeyError) as info:
        failed("k", KeyError("key")).get()
    assert info.value.args == ("key",)


def test_get_without_propagate_returns_the_exception() -> None:
    result = failed("f", InvoiceMissing("gone"))
    value = result.get(propagate=False)
    assert isinstance(value, InvoiceMissing) and str(value) == "gone"
    assert isinstance(result.result, InvoiceMissing)
    assert result.traceback == "Traceback ..."


def test_unknown_exception_type_becomes_a_remote_task_error_of_that_name() -> None:
    result = store("u", states.FAILURE, {"exc_type": "LedgerLocked",
                                         "exc_module": "billing.never_imported",
                                         "exc_message": "try later"})
    with pytest.raises(RemoteTaskError) as info:
        result.get()
    error = info.value
    assert type(error).__name__ == "LedgerLocked"
    assert type(error).__module__ == "billing.never_imported"
    assert str(error) == "try later"


def test_a_stored_result_never_imports_a_module() -> None:
    import sys

    if "tabnanny" in sys.modules:
        pytest.skip("tabnanny is already imported")
    error = result_to_exception({"exc_type": "NannyNag", "exc_module": "tabnanny",
                                 "exc_message": "x"})
    assert isinstance(error, RemoteTaskError) and type(error).__name__ == "NannyNag"
    assert "tabnanny" not in sys.modules


def test_a_name_that_is_not_an_exception_becomes_a_remote_task_error() -> None:
    error = result_to_exception({"exc_type": "print", "exc_module": "builtins",
                                 "exc_message": "x"})
    assert isinstance(error, RemoteTaskError) and type(error).__name__ == "print"


def test_an_exception_whose_constructor_needs_more_becomes_a_remote_task_error() -> None:
    # Its arguments are not JSON (an object), and its message alone cannot rebuild it.
    original = UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")
    original.args = (object(),)
    error = result_to_exception(exception_to_result(original))
    assert isinstance(error, RemoteTaskError)
    assert type(error).__name__ == "UnicodeDecodeError"


def test_an_exception_with_bytes_arguments_is_rebuilt_exactly() -> None:
    original = UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")
    stored = serialization.loads(serialization.dumps(exception_to_result(original)))
    error = result_to_exception(stored)
    assert type(error) is UnicodeDecodeError
    assert (error.object, error.start, error.reason) == (b"\xff", 0, "invalid start byte")


class AmountTooHigh(Exception):
    def __init__(self, amount: int, limit: int) -> None:
        super().__init__(amount, limit)
        self.amount, self.limit = amount, limit

    def __str__(self) -> str:
        return f"{self.amount} is over {self.limit}"


def test_an_exception_with_several_arguments_is_rebuilt_from_them() -> None:
    with pytest.raises(AmountTooHigh) as info:
        failed("multi", AmountTooHigh(120, 100)).get()
    assert (info.value.amount, info.value.limit) == (120, 100)
    assert str(info.value) == "120 is over 100"


def test_a_class_local_to_a_function_becomes_a_remote_task_error() -> None:
    class LocalError(Exception):
        pass

    with pytest.raises(RemoteTaskError, match="local") as info:
        failed("local", LocalError("local")).get()
    assert type(info.value).__name__.endswith("LocalError")


def test_a_result_that_is_no_exception_record_is_a_remote_task_error() -> None:
    with pytest.raises(RemoteTaskError, match="'oops'"):
        store("r", states.FAILURE, "oops").get()


@pytest.mark.parametrize("exc_type", ["django", "test-module"])
def test_get_raises_nested_exception_classes_with_their_own_type(exc_type: str) -> None:
    from django.contrib.auth.models import User

    cls: type[Exception] = User.DoesNotExist if exc_type == "django" else Outer.NestedError
    with pytest.raises(cls, match="no such user"):
        failed("n", cls("no such user")).get()


def test_get_times_out_on_a_pending_task() -> None:
    result = AsyncResult("never-runs")
    started = time.monotonic()
    with pytest.raises(TimeoutError) as info:
        result.get(timeout=0.05, interval=0.01)
    assert 0.05 <= time.monotonic() - started < 1.0
    assert isinstance(info.value, builtins.TimeoutError)
    assert "never-runs was not ready after 0.05 s (state PENDING)" in str(info.value)


def test_get_waits_for_a_result_that_arrives_later() -> None:
    import threading

    result = AsyncResult("soon")
    timer = threading.Timer(0.05, lambda: store("soon", states.SUCCESS, "done"))
    timer.start()
    try:
        assert result.get(timeout=5, interval=0.01) == "done"
    finally:
        timer.join()


def test_forget_deletes_the_stored_result() -> None:
    result = store("gone", states.SUCCESS, 1)
    assert result.get() == 1 and result.exists()
    result.forget()
    assert not result.exists()
    assert result.state == states.PENDING


def test_exists_is_true_from_enqueue_on() -> None:
    get_result_store().create_pending([Message(id="queued", task="unit.result.task")])
    result = AsyncResult("queued")
    assert result.exists() and result.state == states.PENDING


def test_revoke_then_get_raises_task_revoked_error() -> None:
    get_result_store().create_pending([Message(id="doomed", task="unit.result.task")])
    result = AsyncResult("doomed")
    assert result.revoke() is True
    assert result.state == states.REVOKED and result.ready()
    with pytest.raises(TaskRevokedError, match="doomed was revoked"):
        result.get()
    assert result.get(propagate=False) is None


def test_revoking_a_finished_task_changes_nothing() -> None:
    result = store("finished", states.SUCCESS, 5)
    assert result.revoke() is False
    assert result.state == states.SUCCESS and result.get() == 5


def test_retry_state_exposes_the_reason_as_the_result() -> None:
    result = store("again", states.RETRY, exception_to_result(InvoiceMissing("later")))
    assert isinstance(result.result, InvoiceMissing)
    assert not result.ready()


@override_settings(TASKS_RESULT_BACKEND=None)
def test_disabled_result_backend_names_the_setting() -> None:
    result = AsyncResult("any")
    with pytest.raises(ResultBackendDisabled, match="TASKS_RESULT_BACKEND"):
        _ = result.state
    with pytest.raises(ResultBackendDisabled):
        result.get(timeout=0)
    with pytest.raises(ResultBackendDisabled):
        result.exists()


# -- Celery's small conveniences ---------------------------------------------------------------


def test_task_id_is_the_id_and_str_is_the_id() -> None:
    result = AsyncResult("abc-123")
    assert result.task_id == result.id == "abc-123"
    assert str(result) == "abc-123" and f"queued {result}" == "queued abc-123"


@pytest.mark.parametrize("backend", ["memory://", None])
def test_an_eager_result_is_read_without_the_store(backend: str | None) -> None:
    from django_tasks.result import EagerResult, ResultMeta

    with override_settings(TASKS_RESULT_BACKEND=backend):
        result = EagerResult(ResultMeta("e-1", states.SUCCESS, b"\x00", task_name="t"))
        assert (result.task_id, str(result), repr(result)) == ("e-1", "e-1", "<EagerResult: e-1>")
        assert result.get() == result.wait(timeout=1) == result.result == b"\x00"
        assert (result.state, result.status, result.name) == (states.SUCCESS,) * 2 + ("t",)
        assert result.ready() and result.successful() and not result.failed()
        assert result.revoke() is False and result.state == states.SUCCESS
        result.forget()
        assert result.get() == b"\x00"


def test_an_eager_failure_raises_from_get_unless_told_not_to() -> None:
    from django_tasks.result import EagerResult, ResultMeta

    failed = ResultMeta("e-2", states.FAILURE, exception_to_result(InvoiceMissing("no 7")))
    result = EagerResult(failed)
    with pytest.raises(InvoiceMissing, match="no 7"):
        result.get()
    assert isinstance(result.get(propagate=False), InvoiceMissing)
