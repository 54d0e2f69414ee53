"""End-to-end: real workers run real tasks; crashes, signals and bad input are survived."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from .conftest import Project

pytestmark = pytest.mark.e2e
SHORT_LEASE = {"TASKS_LEASE_SECONDS": "3", "TASKS_HEARTBEAT_SECONDS": "0.5"}


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def descendants(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_thousand_tasks_all_succeed(project: Project) -> None:
    project.shell("from testproject.demo.tasks import add\n"
                  "for i in range(1000): add.delay(i, i)")
    project.worker("-c", "2", "-l", "warning")
    project.wait("1000 results", lambda: project.query(
        "SELECT COUNT(*) FROM django_tasks_taskresult WHERE state = 'SUCCESS'")[0][0] == 1000,
        timeout=120)
    rows = project.query("SELECT args, result FROM django_tasks_taskresult")
    assert len(rows) == 1000
    assert all(json.loads(result) == 2 * json.loads(args)[0] for args, result in rows)
    assert project.query("SELECT COUNT(*) FROM django_tasks_queuedmessage")[0][0] == 0


def test_kill_9_means_exactly_one_more_run_after_the_lease(project: Project,
                                                           tmp_path: Path) -> None:
    marker = tmp_path / "starts"
    first = project.worker("-c", "1", "--hostname", "A", **SHORT_LEASE)
    task_id = project.shell(
        "from testproject.demo.tasks import slow\n"
        f"print(slow.delay(6, marker={str(marker)!r}).id)").strip()
    project.wait("the task to start on A", lambda: len(lines(marker)) == 1)
    project.worker("-c", "1", "--hostname", "B", **SHORT_LEASE)
    time.sleep(5)  # longer than the lease: A renews it, so B must not get the task
    assert len(lines(marker)) == 1, "redelivered while its worker lived"
    children = descendants(first.pid)
    assert children
    os.kill(first.pid, signal.SIGKILL)
    project.wait("A's pool process to die with it",
                 lambda: not any(alive(pid) for pid in children), timeout=10)
    project.wait("the task to finish on B",
                 lambda: project.result(task_id)[:1] == ("SUCCESS",), timeout=30)
    starts = lines(marker)
    assert len(starts) == 2 and starts[1].endswith(" B")
    _state, _, worker, attempts = project.result(task_id)
    assert (worker, attempts) == ("B", 2)


def test_rollback_inside_atomic_never_runs_the_task(project: Project) -> None:
    out = project.shell(
        "from django.db import transaction\n"
        "from testproject.demo.tasks import add\n"
        "try:\n"
        "    with transaction.atomic():\n"
        "        print(add.delay(1, 2).id)\n"
        "        raise RuntimeError('roll back')\n"
        "except RuntimeError:\n"
        "    pass\n"
        "print(add.delay(3, 4).id)\n")
    rolled_back, committed = out.split()
    project.worker("-c", "1")
    project.wait("the committed task", lambda: project.result(committed)[:1] == ("SUCCESS",))
    time.sleep(0.5)
    assert project.result(rolled_back) == ()
    assert project.query("SELECT COUNT(*) FROM django_tasks_queuedmessage")[0][0] == 0


def start_slow(project: Project, seconds: float, marker: Path) -> str:
    """Queue ``slow(seconds)`` and return its id once a worker has started it."""
    task_id = project.shell(
        "from testproject.demo.tasks import slow\n"
        f"print(slow.delay({seconds}, marker={str(marker)!r}).id)").strip()
    project.wait("the task to start", lambda: len(lines(marker)) >= 1)
    return task_id


def test_sigterm_lets_the_running_task_finish(project: Project, tmp_path: Path) -> None:
    marker = tmp_path / "starts"
    worker = project.worker("-c", "1")
    task_id = start_slow(project, 5, marker)
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.proc.wait(timeout=20) == 0, worker.output()
    assert project.result(task_id)[0] == "SUCCESS"
    assert "warm shutdown" in worker.output()


def test_second_sigterm_returns_the_task_to_the_queue(project: Project,
                                                      tmp_path: Path) -> None:
    marker = tmp_path / "starts"
    worker = project.worker("-c", "1")
    task_id = start_slow(project, 30, marker)
    worker.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.proc.wait(timeout=10) == 0, worker.output()
    rows = project.query("SELECT task_id, lease_owner, deliveries FROM "
                         "django_tasks_queuedmessage")
    assert rows == [(task_id, None, 0)]
    project.worker("-c", "1")
    project.wait("the task to start again", lambda: len(lines(marker)) == 2)


def _raw_row(project: Project, task_id: str, body: str) -> None:
    past = "2000-01-01 00:00:00" + ("" if project.backend == "sqlite" else "+00")
    project.query(
        "INSERT INTO django_tasks_queuedmessage (queue, priority, task_id, body, visible_at, "
        "lease_owner, deliveries, created_at) VALUES ('default', 0, %s, %s, %s, NULL, 0, %s)",
        (task_id, body, past, past))


def _envelope(task_id: str, name: str, args: list[object]) -> str:
    return json.dumps({"headers": {"id": task_id, "task": name, "retries": 0},
                       "properties": {"delivery_info": {"routing_key": "default"}},
                       "body": [args, {}, {}]})


def test_bad_messages_leave_the_worker_running(project: Project) -> None:
    _raw_row(project, "garbage", "this is not json")
    _raw_row(project, "unknown-1", _envelope("unknown-1", "no.such.task", []))
    _raw_row(project, "badargs-1", _envelope("badargs-1", "testproject.demo.tasks.add", [1]))
    died = project.shell("from testproject.demo.tasks import die\nprint(die.delay().id)").strip()
    worker = project.worker("-c", "1", TASKS_MAX_DELIVERIES="2")
    project.wait("the dying task to end as FAILURE",
                 lambda: project.result(died)[:1] == ("FAILURE",), timeout=60)
    good = project.shell("from testproject.demo.tasks import add\n"
                         "print(add.delay(20, 22).id)").strip()
    project.wait("a good task after the bad ones",
                 lambda: project.result(good)[:1] == ("SUCCESS",))
    assert json.loads(project.result("unknown-1")[1])["exc_type"] == "NotRegistered"
    assert json.loads(project.result("badargs-1")[1])["exc_type"] == "TypeError"
    reason = json.loads(project.result(died)[1])
    assert reason["exc_type"] == "WorkerLostError" and "delivered 2 times" in reason["exc_message"]
    assert project.query("SELECT COUNT(*) FROM django_tasks_queuedmessage")[0][0] == 0
    output = worker.output()
    assert "Rejected message" in output and "not valid JSON" in output
    assert "died (signal 9)" in output
    assert worker.proc.poll() is None, "the worker stopped"


@pytest.mark.parametrize("database", ["postgres"], indirect=True)
def test_task_succeeds_after_the_database_dropped_the_connection(project: Project) -> None:
    # Only PostgreSQL can drop a client's connection from the server side.
    project.worker("-c", "1")
    first = project.shell("from testproject.demo.tasks import add\n"
                          "print(add.delay(1, 1).id)").strip()
    project.wait("a first task", lambda: project.result(first)[:1] == ("SUCCESS",))
    name = project.url.rsplit("/", 1)[1]
    dropped = project.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
    assert dropped, "the worker held no connection to drop"
    task_id = project.shell("from testproject.demo.tasks import count_users\n"
                            "print(count_users.delay().id)").strip()
    project.wait("a task after the drop", lambda: project.result(task_id)[:1] == ("SUCCESS",))


@pytest.mark.parametrize("pool", ["threads", "solo"])
def test_other_pools_run_tasks_and_stop_warmly(project: Project, pool: str,
                                               tmp_path: Path) -> None:
    marker = tmp_path / "starts"
    worker = project.worker("-P", pool, "-c", "2")
    ids = project.shell(
        "from testproject.demo.tasks import add, slow\n"
        "for i in range(50): add.delay(i, 1)\n"
        f"print(slow.delay(2, marker={str(marker)!r}).id)").split()
    project.wait("50 results", lambda: project.query(
        "SELECT COUNT(*) FROM django_tasks_taskresult WHERE state = 'SUCCESS'")[0][0] >= 50)
    project.wait("the slow task to start", lambda: len(lines(marker)) == 1)
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.proc.wait(timeout=20) == 0, worker.output()
    assert project.result(ids[-1])[0] == "SUCCESS"
