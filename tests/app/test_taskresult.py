"""``manage.py taskresult <id>``."""

from __future__ import annotations

import io
import subprocess
import sys
from decimal import Decimal

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from django_tasks import states

from .factories import make_failure, make_result

pytestmark = pytest.mark.django_db


def show(*args: str) -> str:
    out = io.StringIO()
    call_command("taskresult", *args, stdout=out)
    return out.getvalue()


def test_prints_state_and_value_of_a_success() -> None:
    make_result("ok-1", result='{"total": 3}', worker="w2@host", queue="mail")
    text = show("ok-1")
    lines = dict(line.split(":", 1) for line in text.splitlines() if ":" in line[:9])
    assert lines["task"].strip() == "demo.add" and lines["state"].strip() == "SUCCESS"
    assert lines["worker"].strip() == "w2@host" and lines["queue"].strip() == "mail"
    assert '"total": 3' in text
    assert "traceback" not in text


def test_prints_the_exception_of_a_failure_and_its_traceback_on_request() -> None:
    make_failure("bad-1")
    text = show("bad-1")
    assert "FAILURE" in text and "ValueError('boom <3')" in text
    assert "Traceback (most recent call last)" not in text
    text = show("bad-1", "--traceback")
    assert "traceback:" in text and "Traceback (most recent call last)" in text
    assert "ValueError: boom <3" in text


def test_a_task_that_has_not_run() -> None:
    make_result("queued", states.PENDING, done_ago=None)
    text = show("queued", "--traceback")
    assert "PENDING" in text and "(none stored)" in text


def test_an_unknown_id_is_an_error() -> None:
    with pytest.raises(CommandError, match="No result is stored for task id 'nope'"):
        show("nope")


@override_settings(TASKS_RESULT_BACKEND=None)
def test_without_a_result_store() -> None:
    with pytest.raises(CommandError, match="TASKS_RESULT_BACKEND is None"):
        show("any")


def test_from_the_command_line_an_unknown_id_is_a_short_error() -> None:
    # --traceback is the task's traceback here, so Django must not turn the error into a
    # Python traceback of its own.
    env = {"DJANGO_SETTINGS_MODULE": "testproject.settings", "PATH": "/usr/bin:/bin",
           "TASKS_BROKER_URL": "memory://", "TASKS_RESULT_BACKEND": "memory://"}
    manage = str(settings.BASE_DIR / "manage.py")
    done = subprocess.run([sys.executable, manage, "taskresult", "nope", "--traceback"],
                          capture_output=True, text=True, env=env, timeout=60, check=False)
    assert done.returncode == 1
    assert "CommandError: No result is stored" in done.stderr
    assert "Traceback (most recent call last)" not in done.stderr


# -- -t NAME, as `celery result -t` -----------------------------------------------------------

ADD = "testproject.demo.tasks.add"


def test_dash_t_names_the_task_of_the_result() -> None:
    make_result("add-1", task_name=ADD, result="5")
    for flag in ("-t", "--task"):
        text = show("add-1", flag, ADD)
        assert f"task:    {ADD}" in text and "result:  5" in text


def test_dash_t_names_a_result_stored_without_a_name() -> None:
    make_result("revoked-early", states.REVOKED, task_name="", result=None)
    assert f"task:    {ADD}" in show("revoked-early", "-t", ADD)
    assert "task:    ?" in show("revoked-early")


def test_dash_t_with_another_tasks_id_is_an_error() -> None:
    make_result("add-2", task_name=ADD)
    with pytest.raises(CommandError, match=r"'add-2' is a run of .*add', not of .*multiply'"):
        show("add-2", "-t", "testproject.demo.tasks.multiply")


def test_dash_t_with_an_unknown_task_is_an_error_listing_the_known_ones() -> None:
    make_result("add-3", task_name=ADD)
    with pytest.raises(CommandError, match=r"-t: Task 'demo.nope' is not registered.*"
                                           r"Known tasks: .*testproject\.demo\.tasks\.add"):
        show("add-3", "-t", "demo.nope")


def test_values_json_has_no_literal_for_are_shown_with_their_type() -> None:
    from django_tasks import serialization

    value = {"blob": b"\x00\xff", "price": Decimal("9.99"), "text": "9.99"}
    make_result("typed", task_name=ADD, result=serialization.dumps(value))
    text = show("typed", "-t", ADD)
    assert "\"Decimal('9.99')\"" in text and '"text": "9.99"' in text
    assert "b'\\\\x00\\\\xff'" in text
