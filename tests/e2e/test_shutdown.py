"""End-to-end shutdown: a first SIGTERM lets running tasks finish (warm); a second one, or the
end of the grace period, stops them and hands their messages back (cold)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from .conftest import Project, Worker

pytestmark = pytest.mark.e2e
RESULTS = "django_tasks_taskresult"


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def start_slow(project: Project, seconds: float, marker: Path) -> str:
    """Queue ``slow(seconds)`` and return its id once a worker has started it."""
    task_id = project.delay("slow", seconds=seconds, marker=str(marker))
    project.wait("the slow task to start", lambda: len(lines(marker)) >= 1)
    return task_id


def worker_rows(project: Project, worker: Worker) -> int:
    return project.count("django_tasks_workerstate", "hostname = %s", (worker.hostname,))


def test_sigterm_lets_the_running_task_finish(project: Project, tmp_path: Path) -> None:
    marker = tmp_path / "starts"
    worker = project.worker("-c", "1")
    task_id = start_slow(project, 5, marker)
    waiting = project.delay("add", 1, 2)  # queued behind the running task: never fetched
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.wait_exit(20) == 0
    assert project.state(task_id) == "SUCCESS"
    assert project.queued() == [(waiting, None, 0)]
    assert project.state(waiting) == "PENDING"
    assert worker_rows(project, worker) == 0, "the worker's liveness row outlived it"
    assert "warm shutdown" in worker.output()


@pytest.mark.parametrize("how", ["second-sigterm", "grace-period"])
def test_cold_shutdown_returns_the_task_to_the_queue(project: Project, tmp_path: Path,
                                                     how: str) -> None:
    marker = tmp_path / "starts"
    # slow(6) ends 6 s after it starts; a worker gone within 4 s of SIGTERM did not wait.
    grace = "60" if how == "second-sigterm" else "1"
    worker = project.worker("-c", "1", "--shutdown-timeout", grace)
    task_id = start_slow(project, 6, marker)
    worker.proc.send_signal(signal.SIGTERM)
    if how == "second-sigterm":
        time.sleep(0.3)
        worker.proc.send_signal(signal.SIGTERM)
    assert worker.wait_exit(4) == 0
    assert project.state(task_id) == "STARTED"
    assert project.queued() == [(task_id, None, 0)]
    assert "cold shutdown" in worker.output().lower()

    again = project.worker("-c", "1")
    project.wait_state(task_id, "SUCCESS", timeout=30)
    assert len(lines(marker)) == 2 and lines(marker)[1].endswith(f" {again.hostname}")
    result = project.result(task_id)
    assert result is not None and result["worker"] == again.hostname
    assert project.queued() == []


@pytest.mark.parametrize("pool", ["threads", "solo"])
def test_other_pools_run_tasks_and_stop_warmly(project: Project, pool: str,
                                               tmp_path: Path) -> None:
    marker = tmp_path / "starts"
    worker = project.worker("-P", pool, "-c", "2")
    ids = project.shell(
        "from testproject.demo.tasks import add, slow\n"
        "for i in range(50):\n"
        "    add.delay(i, 1)\n"
        f"print(slow.delay(2, marker={str(marker)!r}).id)\n").split()
    project.wait("50 results", lambda: project.count(RESULTS, "state = 'SUCCESS'") >= 50)
    project.wait("the slow task to start", lambda: len(lines(marker)) == 1)
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.wait_exit(20) == 0
    assert project.state(ids[-1]) == "SUCCESS"
    assert project.count(RESULTS, "state = 'SUCCESS'") == 51
    assert project.queued() == []


@pytest.mark.parametrize("pool", ["threads", "solo"])
def test_other_pools_cold_shutdown_returns_the_task(project: Project, pool: str,
                                                    tmp_path: Path) -> None:
    marker = tmp_path / "starts"
    worker = project.worker("-P", pool, "-c", "1")
    task_id = start_slow(project, 6, marker)
    worker.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.wait_exit(4) == 0
    assert project.state(task_id) == "STARTED"
    assert project.queued() == [(task_id, None, 0)]


def test_a_taken_name_is_refused_and_a_dead_workers_name_is_reused(project: Project) -> None:
    beat = {"TASKS_HEARTBEAT_SECONDS": "0.5"}
    first = project.worker("-c", "1", hostname="same", **beat)
    project.wait_ready(first)
    twin = project.worker("-c", "1", hostname="same", **beat)
    assert twin.wait_exit(30) == 1
    assert "Another worker named 'same' is running" in twin.output()
    assert first.running()
    project.wait_state(project.delay("add", 2, 3), "SUCCESS")

    first.kill()  # kill -9: its row stays behind, and stops moving
    assert worker_rows(project, first) == 1
    successor = project.worker("-c", "1", hostname="same", **beat)
    task_id = project.delay("add", 4, 5)
    project.wait_state(task_id, "SUCCESS", timeout=30)
    result = project.result(task_id)
    assert result is not None and result["worker"] == "same"
    assert "Took over the name same" in successor.output()
    assert successor.running()
