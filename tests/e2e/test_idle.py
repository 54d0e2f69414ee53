"""An idle worker on a database it must poll (MariaDB/MySQL) asks about once a second, however
many processes it runs: its processes take turns (``worker/idle.py``)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from .conftest import Project, _mysql_database

pytestmark = [pytest.mark.e2e, pytest.mark.alone]  # Com_select counts the whole server


@pytest.fixture(scope="module")
def backend() -> Iterator[tuple[str, str]]:
    """MariaDB only: PostgreSQL wakes workers with NOTIFY and SQLite's files are watched."""
    with _mysql_database() as url:
        yield "mysql", url


def _selects(project: Project) -> int:
    rows = project.query("SHOW GLOBAL STATUS LIKE 'Com_select'")
    return int(rows[0][1])


def test_an_idle_worker_with_four_processes_looks_about_once_a_second(project: Project) -> None:
    worker = project.worker("-c", "4")
    project.wait_ready(worker)
    time.sleep(3)  # past the first pauses, which double from 1 ms up to a second
    before = _selects(project)
    time.sleep(10)
    selects = _selects(project) - before - 1  # less this test's own SHOW
    # One look a second (a SELECT ... FOR UPDATE each), plus the heartbeat's reads every 5 s:
    # about 12. Four processes looking on their own would make over 40.
    assert selects <= 20, f"{selects} SELECTs in 10 s from an idle worker"
    started = time.monotonic()
    task_id = project.delay("add", 2, 3)
    project.wait_state(task_id, "SUCCESS", timeout=10)
    # The first task after an idle spell waits at most one pause (TASKS_POLL_INTERVAL, 1 s)
    # beyond its own time to start.
    assert time.monotonic() - started < 8
