"""Follow-up messages on the database broker with database results: written in the
transaction that stores the outcome and acks the message, or not at all."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from django_tasks import states
from django_tasks.conf import get_broker, get_result_store
from django_tasks.kernel import Hook, Kernel, Run
from django_tasks.message import Message
from django_tasks.publishing import publish
from django_tasks.task import Task, build_message
from django_tasks.worker import settle as settle_module
from django_tasks.worker.consumer import Consumer

pytestmark = [pytest.mark.django_db(transaction=True),
              pytest.mark.usefixtures("database_tasks")]


@pytest.fixture
def tasks(define: Callable[..., Any]) -> tuple[Task[Any, Any], Task[Any, Any]]:
    first = define(name="unit.follow.first")(lambda x: x + 1)
    then = define(name="unit.follow.then")(lambda x: x * 10)
    return first, then


class Then(Hook):
    """Follows each run of the first task with the second, given its result."""

    def __init__(self, first: Task[Any, Any], then: Task[Any, Any]) -> None:
        self.first, self.then = first, then

    def settle(self, run: Run) -> None:
        if run.message.task == self.first.name and run.outcome is not None:
            run.add_follow_up(build_message(self.then.name, (run.outcome.result,), {}))


def consumer(hook: Hook) -> Consumer:
    c = Consumer(queues=["default"], owner="test/1", hostname="test@host", prefetch=16,
                 lease=30, stop=threading.Event())
    c.kernel = Kernel([*c.kernel.hooks, hook])
    return c


def drain(c: Consumer) -> None:
    c.process(get_broker().fetch(["default"], c.owner, 16, 30))


def queued() -> list[Message]:
    return [Message.decode(d.body) for d in get_broker().fetch(["default"], "peek", 100, 30)]


def test_a_follow_up_is_queued_with_the_outcome(tasks: Any) -> None:
    first, then = tasks
    task_id = publish(build_message(first.name, (1,), {})).id
    drain(consumer(Then(first, then)))
    store = get_result_store()
    assert store is not None
    meta = store.get(task_id)
    assert meta is not None and meta.state == states.SUCCESS
    [follow_up] = queued()
    assert follow_up.task == then.name and follow_up.args == (2,)
    assert store.get(follow_up.id) is not None  # its PENDING row, written with it


def test_a_follow_up_that_cannot_be_written_takes_its_outcome_and_ack_with_it(
        tasks: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    first, then = tasks
    task_id = publish(build_message(first.name, (1,), {})).id
    real = settle_module.Settler._follow_up

    def broken(self: Any, batch: Any) -> None:
        real(self, batch)  # written, then the transaction fails after it
        if any(s.follow_up for s in batch):
            raise ValueError("cannot write this follow-up")

    monkeypatch.setattr(settle_module.Settler, "_follow_up", broken)
    drain(consumer(Then(first, then)))
    store = get_result_store()
    assert store is not None
    meta = store.get(task_id)
    # Rolled back together, then settled on its own as a FAILURE without its follow-up.
    assert meta is not None and meta.state == states.FAILURE
    assert "cannot write this follow-up" in str(meta.result)
    assert queued() == []
