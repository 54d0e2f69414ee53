"""``manage.py taskresult <id>``."""

from __future__ import annotations

import io
import subprocess
import sys

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
