"""End-to-end stall detection: a worker whose database calls hang (here, on a table lock
that is never released) exits with status 4 within its stall timeout instead of sitting there
looking alive. PostgreSQL only: it is the server here on which a lock can hold a query."""

from __future__ import annotations

import time

import pytest

from .conftest import Project

pytestmark = [pytest.mark.e2e,
              pytest.mark.parametrize("backend", ["postgres"], indirect=True)]
SHORT = {"TASKS_HEARTBEAT_SECONDS": "0.5"}


@pytest.mark.parametrize("pool", ["prefork", "threads", "solo"])
def test_a_worker_that_cannot_reach_the_queue_exits_with_status_4(project: Project,
                                                                  pool: str) -> None:
    import psycopg

    worker = project.worker("-c", "1", "-P", pool, "--stall-timeout", "2", **SHORT)
    project.wait_ready(worker)
    project.wait_state(project.delay("add", 1, 1), "SUCCESS")
    with psycopg.connect(project.url) as blocker:  # a transaction that never ends
        blocker.execute("LOCK TABLE django_tasks_queuedmessage IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        assert worker.wait_exit(30) == 4
        waited = time.monotonic() - started
        blocker.rollback()
    assert waited < 20
    output = worker.output()
    assert "Worker stalled:" in output and "exiting with status 4" in output


def test_a_long_task_is_not_a_stall(project: Project) -> None:
    worker = project.worker("-c", "1", "--stall-timeout", "1", **SHORT)
    task_id = project.delay("slow", seconds=3)
    project.wait_state(task_id, "SUCCESS", timeout=30)
    project.wait_state(project.delay("add", 2, 2), "SUCCESS")
    assert worker.running()
