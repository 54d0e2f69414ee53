"""End-to-end start-up failures: a worker that cannot reach its database waits for it with
one line per try, then exits with status 4 and one line (no traceback); a database without
the django_tasks tables is told to run migrate."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT, Project

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _taskworker(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "manage.py", "taskworker", "-c", "1", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_an_unreachable_database_is_waited_for_then_one_line_and_status_4(
        project: Project) -> None:
    url = f"postgres://postgres@127.0.0.1:{_free_port()}/nothing"
    proc = _taskworker({**project.env, "DATABASE_URL": url}, "--stall-timeout", "3")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 4, output
    assert "Traceback" not in output, output
    assert output.count("Cannot reach the database 'default' to start") >= 2
    assert "did not answer for 3s" in output.strip().splitlines()[-1]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_database_without_the_tables_says_run_migrate(project: Project,
                                                         tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/empty.sqlite3"
    proc = _taskworker({**project.env, "DATABASE_URL": url})
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output
    assert "Traceback" not in output, output
    assert "run `manage.py migrate` first" in output
