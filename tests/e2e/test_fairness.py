"""End-to-end fair dispatch: a long task does not keep the messages its process claimed with
it from idle processes (Celery's prefetch trap; its answer was ``-O fair``). SQLite only:
what is tested is the worker's, not the database's."""

from __future__ import annotations

import datetime as dt

import pytest

from .conftest import Project

pytestmark = [pytest.mark.e2e,
              pytest.mark.parametrize("backend", ["sqlite"], indirect=True)]
RESULTS = "django_tasks_taskresult"
LONG = 4.0


@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_two_long_tasks_claimed_together_run_side_by_side(project: Project, pool: str) -> None:
    worker = project.worker("-c", "2", "-P", pool, "-l", "info")
    project.wait_ready(worker)
    # Warm the consumers up: quick tasks grow their batches.
    project.shell("from testproject.demo.tasks import noop\nnoop.delay_many([()] * 300)\n")
    project.wait("the warm-up", lambda: project.count(RESULTS, "state = 'SUCCESS'") == 300)
    # Queued in one commit, so that one consumer may well claim all four at once.
    ids = project.shell(
        "from django.db import transaction\n"
        "from testproject.demo.tasks import noop, slow\n"
        "with transaction.atomic():\n"
        f"    a = slow.delay({LONG})\n"
        "    noop.delay()\n"
        f"    b = slow.delay({LONG})\n"
        "    noop.delay()\n"
        "print(a.id, b.id)\n").split()[-2:]
    for task_id in ids:
        project.wait_state(task_id, "SUCCESS", timeout=4 * LONG + 30)
    spans = {}
    for task_id in ids:
        [(started, done)] = project.query(
            f"SELECT started_at, date_done FROM {RESULTS} WHERE task_id = %s", (task_id,))
        spans[task_id] = (_when(started), _when(done))
    (a_start, a_done), (b_start, b_done) = spans[ids[0]], spans[ids[1]]
    assert a_start < b_done and b_start < a_done, (
        f"the long tasks ran one after the other: {spans}\n{worker.output()}")


def _when(value: object) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value
    return dt.datetime.fromisoformat(str(value))
