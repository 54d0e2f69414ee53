"""``get_task_logger``: records made inside a task carry its name and id, however it runs."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from django_tasks.testing import TaskQueue
from django_tasks.utils.log import (
    TASK_FORMAT,
    TaskFormatter,
    WorkerFormatter,
    get_task_logger,
)

Define = Any
logger = get_task_logger(__name__)


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def tagged(self) -> list[tuple[str, str, str]]:
        return [(r.task_name, r.task_id, r.getMessage())  # type: ignore[attr-defined]
                for r in self.records]


@pytest.fixture
def records() -> Iterator[Records]:
    """Catches what reaches ``django_tasks.task`` (the project's LOGGING stops django_tasks'
    records from reaching the root logger, so caplog would not see them)."""
    handler = Records()
    parent = logging.getLogger("django_tasks.task")
    parent.addHandler(handler)
    level, parent.level = parent.level, logging.DEBUG
    yield handler
    parent.removeHandler(handler)
    parent.level = level


def test_it_is_the_named_logger_under_django_tasks_task() -> None:
    assert logger is logging.getLogger(__name__)
    assert logger.parent is logging.getLogger("django_tasks.task")
    assert get_task_logger(__name__) is logger
    assert len(logger.filters) == 1  # asking again adds nothing


@pytest.mark.parametrize("name", ["django_tasks", "django_tasks.task"])
def test_django_tasks_own_loggers_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="get_task_logger\\(__name__\\)"):
        get_task_logger(name)


def test_outside_a_task_the_fields_are_question_marks(records: Records) -> None:
    logger.info("plain %s", "call")
    assert records.tagged() == [("???", "???", "plain call")]


@pytest.mark.usefixtures("memory_tasks")
def test_apply_and_a_direct_call(define: Define, records: Records) -> None:
    @define(name="unit.log.greet")
    def greet(who: str) -> str:
        logger.warning("hello %s", who)
        return who

    result = greet.apply(("ada",))
    greet("bob")  # a plain function call has no id, as in Celery
    assert records.tagged() == [("unit.log.greet", result.id, "hello ada"),
                                ("unit.log.greet", "???", "hello bob")]


@pytest.mark.usefixtures("memory_tasks")
@pytest.mark.usefixtures("eager")
def test_an_eager_task_that_applies_another(define: Define, records: Records) -> None:
    @define(name="unit.log.inner")
    def inner() -> None:
        logger.info("inner")

    @define(name="unit.log.outer", bind=True)
    def outer(self: Any) -> str:
        logger.info("outer before")
        inner()  # a direct call: the outer run's id is the one that says where it ran
        logger.info("outer after")
        return str(self.request.id)

    result = outer.delay()
    task_id = result.get()
    assert records.tagged() == [("unit.log.outer", task_id, "outer before"),
                                ("unit.log.outer", task_id, "inner"),
                                ("unit.log.outer", task_id, "outer after")]


def test_through_the_worker_code_and_in_threads_of_their_own(define: Define, records: Records,
                                                              task_queue: TaskQueue) -> None:
    @define(name="unit.log.work")
    def work(n: int) -> int:
        logger.info("work %d", n)
        return n

    first, second = work.delay(1), work.delay(2)
    outside = threading.Thread(target=logger.info, args=("elsewhere",))
    task_queue.run_pending()
    outside.start()
    outside.join()
    assert set(records.tagged()) == {("???", "???", "elsewhere"),
                                     ("unit.log.work", first.id, "work 1"),
                                     ("unit.log.work", second.id, "work 2")}


@pytest.mark.usefixtures("memory_tasks")
def test_an_async_task(define: Define, records: Records) -> None:
    @define(name="unit.log.nap")
    async def nap() -> None:
        await asyncio.sleep(0)
        logger.info("awake")

    result = nap.apply()
    assert records.tagged() == [("unit.log.nap", result.id, "awake")]


def make_record(**fields: Any) -> logging.LogRecord:
    record = logging.LogRecord("app.tasks", logging.INFO, __file__, 1, "sent %s", ("7",), None)
    record.__dict__.update(fields)
    return record


def test_the_workers_formatter_shows_the_task_on_task_records_only() -> None:
    formatter = WorkerFormatter()
    tagged = formatter.format(make_record(task_name="app.send", task_id="id-1",
                                          processName="MainProcess"))
    assert tagged.endswith("INFO/MainProcess] app.send[id-1]: sent 7")
    plain = formatter.format(make_record(processName="MainProcess"))
    assert plain.endswith("INFO/MainProcess] sent 7")
    outside = formatter.format(make_record(task_name="???", task_id="???"))
    assert "???" not in outside


def test_the_task_formatter_fills_the_fields_for_any_record() -> None:
    assert TaskFormatter()._fmt == TASK_FORMAT
    text = TaskFormatter("%(task_name)s/%(task_id)s %(message)s").format(make_record())
    assert text == "???/??? sent 7"


def test_worker_configure_uses_the_workers_formatter(monkeypatch: pytest.MonkeyPatch) -> None:
    from django_tasks.process import logs

    root = logging.getLogger("django_tasks")
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    level = root.level
    try:
        logs.configure("debug")
        assert root.level == logging.DEBUG
        assert isinstance(root.handlers[0].formatter, WorkerFormatter)
    finally:
        root.setLevel(level)
    with pytest.raises(ValueError, match="'loud' is not one of DEBUG, INFO"):
        logs.configure("loud")

