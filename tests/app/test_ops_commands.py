"""The operations commands that need no control channel: taskcall, taskpurge, taskconfig,
taskstatus. Run against the database broker and the test database."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from django_tasks.conf import get_broker, reset_cache
from django_tasks.management.commands.taskstatus import NONE_ONLINE
from django_tasks.message import Message
from django_tasks.models import QueuedMessage, TaskResult

from .factories import make_worker

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def database_broker() -> Iterator[None]:
    with override_settings(TASKS_BROKER_URL="django://", TASKS_RESULT_BACKEND="django://",
                           TASKS_ALWAYS_EAGER=False):
        reset_cache()
        yield
    reset_cache()


def run(name: str, *args: str, **options: Any) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(name, *args, stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


def queued() -> list[Message]:
    return [Message.decode(b) for b in QueuedMessage.objects.values_list("body", flat=True)]


# -- taskcall ---------------------------------------------------------------------------------


def test_taskcall_queues_a_registered_task_and_prints_its_id() -> None:
    out, err = run("taskcall", "testproject.demo.tasks.add", "--args", "[2, 3]",
                   "--queue", "mail", "--countdown", "60")
    [message] = queued()
    assert out.strip() == message.id and err == ""
    assert (message.task, message.args, message.queue) == ("testproject.demo.tasks.add",
                                                           (2, 3), "mail")
    assert message.eta is not None
    assert TaskResult.objects.get(task_id=message.id).state == "PENDING"


def test_taskcall_with_kwargs_and_json_output() -> None:
    out, _ = run("taskcall", "testproject.demo.tasks.add", "--kwargs", '{"x": 1, "y": 2}',
                 "--json")
    [message] = queued()
    assert json.loads(out) == {"id": message.id, "task": "testproject.demo.tasks.add"}
    assert message.kwargs == {"x": 1, "y": 2}


def test_taskcall_of_an_unknown_name_queues_it_with_a_note() -> None:
    _, err = run("taskcall", "elsewhere.tasks.report", "--args", "[1]")
    assert [m.task for m in queued()] == ["elsewhere.tasks.report"]
    assert "not registered in this process" in err


@pytest.mark.parametrize(("args", "message"), [
    (["--args", "[1, 2"], "--args is not JSON"),
    (["--args", '{"x": 1}'], "--args is dict JSON; give a JSON list"),
    (["--kwargs", "[1]"], "--kwargs is list JSON; give a JSON object"),
    (["--args", "[1, 2, 3]"], "testproject.demo.tasks.add(x: int, y: int)"),
    (["--eta", "tomorrow"], "is not an ISO 8601 time"),
    (["--eta", "2026-12-01T09:30:00"], "has no time zone"),
    (["--args", "[1, 2]", "--priority", "12"], "priority must be an int from 0 to 9"),
], ids=["bad JSON", "args not a list", "kwargs not an object", "wrong signature", "bad eta",
        "naive eta", "priority"])
def test_taskcall_refuses_bad_input_with_what_to_fix(args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=None) as caught:
        run("taskcall", "testproject.demo.tasks.add", *args)
    assert message in str(caught.value)
    assert not QueuedMessage.objects.exists()


# -- taskpurge --------------------------------------------------------------------------------


def _fill() -> None:
    get_broker().publish([Message(id=f"d{i}", task="t") for i in range(3)]
                         + [Message(id="m0", task="t", queue="mail")])


def test_taskpurge_asks_and_a_no_deletes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    _fill()
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    asked: list[str] = []
    monkeypatch.setattr("builtins.input", lambda prompt: asked.append(prompt) or "n")
    out, _ = run("taskpurge")
    assert "Delete 4 message(s) from default, mail" in asked[0]
    assert "Nothing was deleted." in out
    assert QueuedMessage.objects.count() == 4


def test_taskpurge_with_a_yes_deletes(monkeypatch: pytest.MonkeyPatch) -> None:
    _fill()
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt: "y")
    out, _ = run("taskpurge", "--queue", "mail")
    assert "mail: 1 message(s) deleted" in out
    assert QueuedMessage.objects.count() == 3


def test_taskpurge_without_a_terminal_needs_force() -> None:
    _fill()
    with pytest.raises(CommandError, match="Add --force"):
        run("taskpurge")
    assert QueuedMessage.objects.count() == 4
    out, _ = run("taskpurge", "--force", "--json")
    assert json.loads(out) == {"purged": {"default": 3, "mail": 1}, "total": 4}
    assert not QueuedMessage.objects.exists()


def test_taskpurge_revokes_the_purged_tasks_so_nobody_waits_for_them() -> None:
    """Their PENDING rows become REVOKED (get() raises at once; taskprune deletes them in
    time); a row already final, and the rows of another queue, stay as they were."""
    from django_tasks.exceptions import TaskRevokedError
    from django_tasks.publishing import publish

    waiting = publish(Message(id="w", task="t"))
    done = publish(Message(id="done", task="t"))
    kept = publish(Message(id="kept", task="t", queue="mail"))
    TaskResult.objects.filter(task_id="done").update(state="SUCCESS")
    out, _ = run("taskpurge", "--force", "--queue", "default")
    assert "default: 2 message(s) deleted" in out
    states = dict(TaskResult.objects.values_list("task_id", "state"))
    assert states == {"w": "REVOKED", "done": "SUCCESS", "kept": "PENDING"}
    assert TaskResult.objects.get(task_id="w").date_done is not None
    with pytest.raises(TaskRevokedError):
        waiting.get(timeout=5)
    assert (done.state, kept.state) == ("SUCCESS", "PENDING")


# -- taskconfig -------------------------------------------------------------------------------


def test_taskconfig_prints_what_the_project_sets_with_secrets_censored(settings: Any) -> None:
    settings.TASKS_RESULT_BACKEND = "django://"
    settings.TASKS_BROKER_URL = "redis://:s3cret@cache.internal:6379/0"
    settings.TASKS_SIGNATURE_KEY = "abc"  # unknown here, but a secret's name: hidden anyway
    out, _ = run("taskconfig")
    assert "s3cret" not in out
    assert "TASKS_BROKER_URL" in out and "redis://:**@cache.internal:6379/0" in out
    assert "(setting)" in out and "(default)" not in out


def test_taskconfig_all_and_json(settings: Any) -> None:
    settings.TASKS_MAX_DELIVERIES = 5
    out, _ = run("taskconfig", "--all", "--json")
    data = json.loads(out)
    assert data["TASKS_MAX_DELIVERIES"] == {"value": 5, "source": "setting"}
    assert data["TASKS_PRUNE_BATCH_SIZE"] == {"value": 1000, "source": "default"}
    assert data["TASKS_RESULT_EXPIRES"]["value"] == 86400.0  # a timedelta, in seconds


# -- taskstatus -------------------------------------------------------------------------------


def test_taskstatus_lists_live_workers_like_celery_status() -> None:
    make_worker("w1@host")
    make_worker("w2@host", beat_ago=3)
    make_worker("old@host", beat_ago=600)
    out, _ = run("taskstatus")
    assert "w1@host: OK" in out and "w2@host: OK" in out
    assert "old@host: no heartbeat for 600s" in out
    assert out.rstrip().endswith("2 nodes online.")


def test_taskstatus_without_live_workers_exits_69() -> None:
    make_worker("old@host", beat_ago=600)
    with pytest.raises(SystemExit) as exited:
        run("taskstatus")
    assert exited.value.code == NONE_ONLINE


def test_taskstatus_json() -> None:
    make_worker("w1@host", queues="default,mail")
    out, _ = run("taskstatus", "--json")
    [row] = json.loads(out)
    assert (row["hostname"], row["online"], row["queues"]) == ("w1@host", True,
                                                                ["default", "mail"])
