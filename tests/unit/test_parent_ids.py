"""A task queued by a running task is its child: parent_id and root_id, as in Celery."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from django_tasks import shared_task
from django_tasks.conf import get_broker
from django_tasks.message import Message
from django_tasks.request import current_request


@pytest.fixture(autouse=True)
def _memory(memory_tasks: None) -> Iterator[None]:
    yield


@shared_task(name="unit.parents.leaf")
def leaf() -> None:
    return None


@shared_task(name="unit.parents.spawner")
def spawner() -> str:
    return leaf.delay().id


@shared_task(name="unit.parents.explicit")
def explicit() -> str:
    return leaf.apply_async(parent_id="chosen", root_id="chosen-root").id


def queued(task_id: str) -> Message:
    deliveries = get_broker().fetch(["default"], "unit/1", 100, 30)
    [found] = [Message.decode(d.body) for d in deliveries if d.task_id == task_id]
    return found


def test_a_task_queued_from_a_running_task_is_its_child() -> None:
    parent = spawner.apply(task_id="the-parent")
    child = queued(parent.get())
    assert (child.parent_id, child.root_id) == ("the-parent", "the-parent")


def test_the_root_is_carried_down_the_generations() -> None:
    parent = spawner.apply(task_id="middle", root_id="the-root")
    child = queued(parent.get())
    assert (child.parent_id, child.root_id) == ("middle", "the-root")


def test_ids_given_by_the_caller_win() -> None:
    child = queued(explicit.apply().get())
    assert (child.parent_id, child.root_id) == ("chosen", "chosen-root")


def test_outside_a_task_there_is_no_parent() -> None:
    assert current_request() is None
    message = queued(leaf.delay().id)
    assert message.parent_id is None and message.root_id in (None, message.id)  # its own root
    plain = queued(spawner())  # a plain call of a task is not a run under a message
    assert plain.parent_id is None
