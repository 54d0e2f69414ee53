"""End-to-end stall detection and health probes: a worker whose database calls hang (here,
on a table lock that is never released) exits with status 4 within its stall timeout instead
of sitting there looking alive, and before that its probe says alive but not ready.
PostgreSQL only: it is the server here on which a lock can hold a query."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import ROOT, Project

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


def probe(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "django_tasks.probe", str(path), *args],
                          capture_output=True, text=True, timeout=30, cwd=ROOT)


def test_the_probe_tells_alive_from_ready(project: Project, tmp_path: Path) -> None:
    import psycopg

    health = tmp_path / "worker.health"
    worker = project.worker("-c", "1", "--health-file", str(health), "--stall-timeout", "60",
                            **SHORT)
    project.wait_ready(worker)
    project.wait("the health file", health.exists)
    assert probe(health, "--ready").returncode == 0
    with psycopg.connect(project.url) as blocker:  # the database stops answering the worker
        blocker.execute("LOCK TABLE django_tasks_queuedmessage IN ACCESS EXCLUSIVE MODE")
        project.wait("readiness to fail", lambda: probe(
            health, "--ready", "--max-lag", "2").returncode == 1, timeout=30)
        alive = probe(health)
        assert alive.returncode == 0, alive.stderr  # alive all the same: no restart loop
        reason = probe(health, "--ready", "--max-lag", "2").stderr
        assert "not reached the database" in reason or "not polled the broker" in reason
        blocker.rollback()
    project.wait("readiness to return", lambda: probe(
        health, "--ready", "--max-lag", "2").returncode == 0, timeout=30)
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.wait_exit(30) == 0
    assert not health.exists()
    assert "no health file" in probe(health).stderr
