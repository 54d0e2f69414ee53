"""``manage.py taskworker`` and ``taskbeat``: a bad option value is one line saying what to
fix, not a traceback, and the command exits with a non-zero status before anything starts."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command


def run_command(command: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"DJANGO_SETTINGS_MODULE": "testproject.settings", "PATH": "/usr/bin:/bin",
           "TASKS_BROKER_URL": "memory://", "TASKS_RESULT_BACKEND": "memory://"}
    manage = str(settings.BASE_DIR / "manage.py")
    return subprocess.run([sys.executable, manage, command, *args], capture_output=True,
                          text=True, env=env, timeout=60, check=False)


@pytest.mark.parametrize("command", ["taskworker", "taskbeat"])
def test_a_bogus_log_level_is_a_one_line_command_error(command: str) -> None:
    done = run_command(command, "-l", "bogus")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "CommandError: --loglevel 'bogus' is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL"]
    assert done.stdout == ""  # no banner: nothing started


@pytest.mark.parametrize("level", ["debug", "Warning", "CRITICAL"])
def test_log_levels_are_read_in_any_case(level: str) -> None:
    from django_tasks.process.logs import parse_level

    assert parse_level(level) == getattr(logging, level.upper())


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--loglevel", "verbose"], "--loglevel 'verbose' is not one of DEBUG"),
        (["--health-file", ""], "--health-file needs the path of a file"),
        (["--health-file", "/"], "--health-file '/' is a directory; name a file in it"),
        (["--health-file", "/no/such/dir/health"], "the directory '/no/such/dir' does not exist"),
        (["--concurrency", "0"], "--concurrency must be at least 1"),
        (["--prefetch", "0"], "--prefetch must be a whole number of at least 1"),
        (["--stall-timeout", "0"], "--stall-timeout must be a positive number of seconds"),
        (["--max-tasks-per-child", "0"], "--max-tasks-per-child must be a whole number"),
    ],
)
def test_bad_option_values_are_command_errors(args: list[str], error: str) -> None:
    with pytest.raises(CommandError, match=error):
        call_command("taskworker", *args)


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["-l", "noisy"], "--loglevel 'noisy' is not one of DEBUG"),
        (["--health-file", "/"], "--health-file '/' is a directory"),
    ],
)
def test_taskbeat_checks_the_same_options(args: list[str], error: str) -> None:
    with pytest.raises(CommandError, match=error):
        call_command("taskbeat", *args)


def test_a_health_file_in_an_existing_directory_is_accepted(tmp_path: Path) -> None:
    from django_tasks.management.options import check_health_file

    check_health_file(str(tmp_path / "worker.health"))
