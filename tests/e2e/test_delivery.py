"""End-to-end delivery contract: every task runs, a killed worker's task runs exactly once
more, a rolled-back enqueue never runs, bad input never stops a worker, and a dropped
database connection is survived."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path

import pytest

from django_tasks.message import Message

from . import broker_checks as check
from .conftest import Project

pytestmark = pytest.mark.e2e
SHORT_LEASE = {"TASKS_LEASE_SECONDS": "3", "TASKS_HEARTBEAT_SECONDS": "0.5"}
QUEUE = "django_tasks_queuedmessage"
RESULTS = "django_tasks_taskresult"


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_a_thousand_tasks_all_succeed(project: Project) -> None:
    project.shell("from testproject.demo.tasks import add\n"
                  "for i in range(1000):\n"
                  "    add.delay(i, i)\n")
    project.worker("-c", "2", "-P", "prefork", "-l", "warning")
    project.wait("1,000 results", lambda: project.count(RESULTS, "state = 'SUCCESS'") == 1000,
                 timeout=120)
    rows = project.query(f"SELECT args, result FROM {RESULTS}")
    pairs = sorted((json.loads(args), json.loads(result)) for args, result in rows)
    assert pairs == [([i, i], 2 * i) for i in range(1000)]
    assert project.count(QUEUE) == 0
    # The worker's row (the admin's Workers page) counts them at its next heartbeat.
    project.wait("the worker's row to count 1,000 tasks done", lambda: project.query(
        "SELECT tasks_done, tasks_failed FROM django_tasks_workerstate") == [(1000, 0)],
        timeout=15)


def test_kill_9_means_exactly_one_more_run_after_the_lease(project: Project,
                                                           tmp_path: Path) -> None:
    # 5 s beside B: longer than the 3 s lease, which A renews, so B must not get the task.
    check.kill_9_means_one_more_run(project, lambda: project.count(QUEUE), tmp_path,
                                    live_wait=5.0, **SHORT_LEASE)


@pytest.mark.alone  # it times starts
def test_countdowns_start_on_time(project: Project) -> None:
    check.countdowns_start_on_time(project, woken=project.backend != "mysql")


def test_rollback_inside_atomic_never_runs_the_task(project: Project) -> None:
    rolled_back, committed = project.shell(check.ROLLED_BACK_THEN_COMMITTED).split()[-2:]
    project.worker("-c", "1")
    project.wait_state(committed, "SUCCESS")
    assert project.result(rolled_back) is None
    assert project.count(RESULTS, "task_id = %s", (rolled_back,)) == 0
    assert project.count(QUEUE) == 0


def _insert_raw(project: Project, task_id: str, body: str) -> None:
    """A queue row shaped the way the database broker writes one (see ``publish``)."""
    now = project.timestamp(dt.datetime.now(dt.UTC))
    project.query(
        f"INSERT INTO {QUEUE} (queue, priority, task_id, body, visible_at, lease_owner, "
        "deliveries, created_at) VALUES ('default', 0, %s, %s, %s, NULL, 0, %s)",
        (task_id, body, now, now))


def test_bad_messages_leave_the_worker_running(project: Project) -> None:
    garbage, unknown, bad_args = (str(uuid.uuid4()) for _ in range(3))
    _insert_raw(project, garbage, "not json")
    _insert_raw(project, unknown, Message(id=unknown, task="no.such.task").encode())
    envelope = Message(id=bad_args, task="testproject.demo.tasks.add").to_envelope()
    envelope["body"] = [[1], {}, {}]
    _insert_raw(project, bad_args, json.dumps(envelope))
    died = project.delay("die")
    before = project.delay("add", 1, 1)

    worker = project.worker("-c", "1", TASKS_MAX_DELIVERIES="2")
    project.wait_state(before, "SUCCESS")
    project.wait_state(died, "FAILURE")
    after = project.delay("add", 20, 22)
    project.wait_state(after, "SUCCESS")

    missing = project.result(unknown)
    assert missing is not None and missing["state"] == "FAILURE"
    reason = json.loads(missing["result"])
    assert reason["exc_type"] == "NotRegistered" and "no.such.task" in reason["exc_message"]

    wrong = project.result(bad_args)
    assert wrong is not None and wrong["state"] == "FAILURE"
    reason = json.loads(wrong["result"])
    assert reason["exc_type"] == "TypeError" and "argument" in reason["exc_message"]

    lost = project.result(died)
    assert lost is not None and lost["state"] == "FAILURE"
    reason = json.loads(lost["result"])
    assert reason["exc_type"] == "WorkerLostError"
    assert "was running 2 times when its process died" in reason["exc_message"]

    assert project.count(QUEUE) == 0, "the undecodable message is still queued"
    unreadable = project.result(garbage)  # recorded under the id its queue row keeps
    assert unreadable is not None and unreadable["state"] == "FAILURE"
    reason = json.loads(unreadable["result"])
    assert reason["exc_type"] == "DecodeError" and "not valid JSON" in reason["exc_message"]
    output = worker.output()
    assert "Rejected message" in output and "not valid JSON" in output
    assert "died (signal 9)" in output
    assert worker.running(), "the worker stopped"


def _drop_connections(project: Project) -> int:
    """Have the server end every other client's connection to the test database."""
    name = project.url.rsplit("/", 1)[1]
    if project.backend == "postgres":
        return len(project.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                 "WHERE datname = %s AND pid <> pg_backend_pid()", (name,)))
    ids = project.query("SELECT id FROM information_schema.processlist "
                        "WHERE db = %s AND id <> CONNECTION_ID()", (name,))
    for (connection_id,) in ids:
        project.query(f"KILL CONNECTION {int(connection_id)}")
    return len(ids)


@pytest.mark.parametrize("backend", ["postgres", "mysql"], indirect=True)
def test_task_succeeds_after_the_database_dropped_the_connection(project: Project) -> None:
    # Only a server can drop a client's connection from its side; SQLite has none.
    worker = project.worker("-c", "1")
    project.wait_state(project.delay("add", 1, 1), "SUCCESS")
    assert _drop_connections(project), "the worker held no connection to drop"
    task_id = project.delay("count_users")
    project.wait_state(task_id, "SUCCESS", timeout=30)
    result = project.result(task_id)
    assert result is not None and json.loads(result["result"]) == 0
    assert worker.running()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_task_that_ran_beside_one_that_killed_its_process_counts_a_delivery(
        project: Project) -> None:
    first = project.delay("add", 1, 1)  # alone in the first batch of one
    ran = project.delay("add", 2, 2)  # second batch: runs, its outcome not yet written...
    died = project.delay("die")  # ...when this one kills the process
    worker = project.worker("-c", "1", TASKS_MAX_DELIVERIES="2")
    project.wait_state(died, "FAILURE")
    project.wait_state(ran, "SUCCESS")
    assert project.result(first)["attempts"] == 1  # type: ignore[index]
    # It had run when its process died: its second run is its second delivery.
    assert project.result(ran)["attempts"] == 2  # type: ignore[index]
    assert "died (signal 9)" in worker.output()
    assert project.count(QUEUE) == 0
