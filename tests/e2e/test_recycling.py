"""End-to-end recycling: ``--max-tasks-per-child`` and ``--max-memory-per-child`` replace
pool processes (prefork) or restart the worker in place (threads, solo) without losing or
repeating a task. SQLite only: recycling does not depend on the database."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from .conftest import Project

pytestmark = [pytest.mark.e2e,
              pytest.mark.parametrize("backend", ["sqlite"], indirect=True)]
RESULTS = "django_tasks_taskresult"


def queue(project: Project, task: str, count: int, **kwargs: object) -> None:
    project.shell(f"from testproject.demo.tasks import {task}\n"
                  f"for _ in range({count}):\n"
                  f"    {task}.delay(**{kwargs!r})\n")


def runners(project: Project, count: int) -> Counter[str]:
    """Which process (``pid-token``) ran each of the ``count`` tasks, once all succeeded."""
    project.wait(f"{count} results", lambda: project.count(
        RESULTS, "state = 'SUCCESS'") == count, timeout=90)
    rows = project.query(f"SELECT result FROM {RESULTS}")
    return Counter(json.loads(result) for (result,) in rows)


@pytest.mark.parametrize("pool", ["prefork", "threads", "solo"])
def test_max_tasks_per_child_replaces_the_process(project: Project, pool: str) -> None:
    worker = project.worker("-c", "1", "-P", pool, "--max-tasks-per-child", "4")
    project.wait_ready(worker)
    queue(project, "whoami", 10)
    ran = runners(project, 10)
    assert max(ran.values()) <= 4, ran
    assert len(ran) >= 3, ran  # 10 tasks, at most 4 each
    assert project.count("django_tasks_queuedmessage") == 0
    assert worker.running()
    pids = {runner.split("-")[0] for runner in ran}
    if pool == "prefork":
        assert len(pids) == len(ran)  # new child processes
        assert "Replacing ForkPoolWorker-1: it ran 4 tasks" in worker.output()
    else:
        assert pids == {str(worker.pid)}  # the same process, executed again
        assert "restarts itself: it ran 4 tasks" in worker.output()
    project.wait_state(project.delay("add", 1, 2), "SUCCESS")


def test_max_memory_per_child_replaces_a_leaking_process(project: Project) -> None:
    # A child starts near 60 MiB; each task keeps 25 MiB more: replaced after a few.
    worker = project.worker("-c", "1", "--max-memory-per-child", str(150 * 1024))
    queue(project, "hoard", 12, mib=25)
    ran = runners(project, 12)
    assert len(ran) >= 3, ran
    assert max(ran.values()) <= 6, ran
    assert "Replacing ForkPoolWorker-1: it uses" in worker.output()
    assert worker.running()
