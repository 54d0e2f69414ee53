"""End-to-end control channel: ``taskinspect`` and ``taskcontrol`` against real workers on
the database broker (requests and replies through the database; NOTIFY on PostgreSQL)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from .conftest import ROOT, Project, Worker

pytestmark = pytest.mark.e2e


def run(project: Project, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=project.env,
                          capture_output=True, text=True, timeout=timeout)


def ask(project: Project, command: str, *args: str) -> dict[str, Any]:
    """``manage.py <command> ... --json``: each worker's reply, by host name."""
    proc = run(project, command, *args, "--json", "--timeout", "5")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    replies: dict[str, Any] = json.loads(proc.stdout)
    return replies


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def start_slow(project: Project, marker: Path, seconds: float = 60) -> str:
    task_id = project.delay("slow", seconds=seconds, marker=str(marker))
    project.wait("the slow task to start", lambda: len(lines(marker)) >= 1)
    return task_id


def ready(project: Project, *args: str, hostname: str = "") -> Worker:
    worker = project.worker(*args, hostname=hostname)
    project.wait_ready(worker)
    return worker


def test_inspect_answers_from_a_live_worker(project: Project, tmp_path: Path) -> None:
    worker = ready(project, "-c", "2", "--queues", "default,mail")
    ping = ask(project, "taskinspect", "ping")
    assert ping == {worker.hostname: {"ok": "pong"}}
    marker = tmp_path / "starts"
    task_id = start_slow(project, marker, 30)
    active = ask(project, "taskinspect", "active")[worker.hostname]["ok"]
    assert [(t["id"], t["name"], t["args"]) for t in active] == [
        (task_id, "testproject.demo.tasks.slow", "[]")]
    assert json.loads(active[0]["kwargs"])["seconds"] == 30
    assert active[0]["worker_pid"] != worker.pid  # a pool process runs it
    stats = ask(project, "taskinspect", "stats")[worker.hostname]["ok"]
    assert stats["pid"] == worker.pid and stats["pool"] == "prefork"
    assert stats["concurrency"] == 2 and len(stats["processes"]) == 2
    assert "testproject.demo.tasks.add" in \
        ask(project, "taskinspect", "registered")[worker.hostname]["ok"]
    assert ask(project, "taskinspect", "queues")[worker.hostname]["ok"] == [
        {"name": "default"}, {"name": "mail"}]
    assert "broker" in ask(project, "taskinspect", "scheduled")[worker.hostname]["ok"]["note"]
    readable = run(project, "taskinspect", "ping")
    assert readable.returncode == 0
    assert f"-> {worker.hostname}: OK" in readable.stdout and "1 node online." in readable.stdout
    # --destination: a name no worker has gets no answer, and exit status 69
    nobody = run(project, "taskinspect", "ping", "-d", "nobody@nowhere", "--timeout", "1")
    assert nobody.returncode == 69 and "no worker answered" in nobody.stderr
    bad = run(project, "taskinspect", "ping", "--timeout", "-1")
    assert bad.returncode == 1 and "--timeout" in bad.stderr
    assert "Traceback" not in bad.stderr


@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_terminate_stops_a_running_task(project: Project, tmp_path: Path, pool: str) -> None:
    """prefork: a task asleep in a system call is stopped (SIGTERM raises in it, and its
    process is replaced); threads: the exception is raised in the thread, which takes it at
    its next Python instruction (here between two half-second sleeps)."""
    journal = tmp_path / "signals"
    worker = project.worker("-c", "2", "--pool", pool, DEMO_SIGNAL_JOURNAL=str(journal))
    project.wait_ready(worker)
    marker = tmp_path / "starts"
    if pool == "prefork":
        task_id = start_slow(project, marker)
    else:
        task_id = project.delay("steps", total=120, seconds=0.5)
        project.wait("the task to report progress", lambda: project.state(task_id) == "PROGRESS")
    began = time.monotonic()
    proc = run(project, "taskcontrol", "terminate", task_id, "--timeout", "5")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"terminated {task_id}" in proc.stdout
    project.wait_state(task_id, "REVOKED", timeout=10)
    project.wait("the message to be acked", lambda: project.count(
        "django_tasks_queuedmessage") == 0, timeout=10)
    assert time.monotonic() - began < 10
    # the pool goes on, and the terminated task is not run again
    project.wait_state(project.delay("add", 2, 3), "SUCCESS", timeout=20)
    time.sleep(2)
    assert project.state(task_id) == "REVOKED"
    assert worker.output().count(f"[{task_id}] received") == 1
    assert f"[{task_id}] revoked and terminated" in worker.output()
    if pool == "prefork":
        assert len(lines(marker)) == 1
    # task_revoked, terminated, from the worker's main process; no task_failure
    seen = [json.loads(line) for line in lines(journal)]
    revoked = [e for e in seen if e["signal"] == "task_revoked"]
    assert [(e["task_id"], e["terminated"], e["signum"], e["expired"], e["pid"])
            for e in revoked] == [(task_id, True, 15, False, worker.pid)]
    assert not [e for e in seen if e["signal"] == "task_failure"]


def test_revoke_sigkill_replaces_the_process(project: Project, tmp_path: Path) -> None:
    worker = ready(project, "-c", "1")
    marker = tmp_path / "starts"
    task_id = start_slow(project, marker)
    before = ask(project, "taskinspect", "stats")[worker.hostname]["ok"]["processes"]
    proc = run(project, "taskcontrol", "revoke", task_id, "--terminate", "--signal", "SIGKILL")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    project.wait_state(task_id, "REVOKED", timeout=10)
    project.wait("the message to be acked", lambda: project.count(
        "django_tasks_queuedmessage") == 0, timeout=10)
    project.wait_state(project.delay("add", 2, 3), "SUCCESS", timeout=20)
    after = ask(project, "taskinspect", "stats")[worker.hostname]["ok"]["processes"]
    assert len(after) == 1 and after != before
    assert len(lines(marker)) == 1


def test_a_worker_started_after_a_revoke_never_runs_the_task(project: Project,
                                                             tmp_path: Path) -> None:
    marker = tmp_path / "starts"
    task_id = project.delay("slow", seconds=0.1, marker=str(marker))
    proc = run(project, "taskcontrol", "revoke", task_id)
    assert proc.returncode == 0 and f"{task_id}: revoked" in proc.stdout
    ready(project, "-c", "1")
    project.wait_state(project.delay("add", 1, 1), "SUCCESS", timeout=20)
    project.wait("the revoked message to be acked", lambda: project.count(
        "django_tasks_queuedmessage") == 0, timeout=10)
    assert lines(marker) == [] and project.state(task_id) == "REVOKED"


@pytest.mark.databases("postgres")  # the control channel on each database: the tests above
@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_pool_and_queues_change_and_shutdown(project: Project, tmp_path: Path,
                                             pool: str) -> None:
    worker = ready(project, "-c", "1", "--pool", pool, "--queues", "default")

    def stats() -> dict[str, Any]:
        return dict(ask(project, "taskinspect", "stats")[worker.hostname]["ok"])

    assert ask(project, "taskcontrol", "pool_grow", "2")[worker.hostname] == {
        "ok": "pool is now 3"}
    assert stats()["concurrency"] == 3
    # three slow tasks run at once on the grown pool
    markers = [tmp_path / f"m{i}" for i in range(3)]
    ids = [project.delay("slow", seconds=3, marker=str(m)) for m in markers]
    project.wait("three tasks running at once", lambda: all(lines(m) for m in markers),
                 timeout=10)
    for task_id in ids:
        project.wait_state(task_id, "SUCCESS", timeout=20)
    assert ask(project, "taskcontrol", "pool_shrink", "2")[worker.hostname] == {
        "ok": "pool is now 1"}
    project.wait("the pool to shrink", lambda: stats()["concurrency"] == 1
                 and len(stats()["processes"]) == 1, timeout=15)

    # a task on the queue "mail" waits until the worker consumes from it
    mail = project.delay("send_welcome_email", "a@example.com", "A")
    time.sleep(2)
    assert project.state(mail) == "PENDING"
    assert ask(project, "taskcontrol", "add_consumer", "mail")[worker.hostname] == {
        "ok": "now consuming from mail"}
    project.wait_state(mail, "SUCCESS", timeout=20)
    assert ask(project, "taskcontrol", "cancel_consumer", "default")[worker.hostname] == {
        "ok": "no longer consuming from default"}
    assert ask(project, "taskinspect", "queues")[worker.hostname]["ok"] == [{"name": "mail"}]
    time.sleep(2)  # a prefork child still finishing with the old list is replaced by now
    queued = project.delay("add", 1, 2)
    time.sleep(3)
    assert project.state(queued) == "PENDING"
    refused = run(project, "taskcontrol", "cancel_consumer", "mail", "--json")
    assert refused.returncode == 1
    assert "only queue" in json.loads(refused.stdout)[worker.hostname]["error"]

    assert ask(project, "taskcontrol", "shutdown")[worker.hostname] == {"ok": "shutting down"}
    assert worker.wait_exit(30) == 0
    assert "warm shutdown" in worker.output()


def test_rate_limit_changes_on_a_running_worker(project: Project) -> None:
    worker = ready(project, "-c", "2")
    before = ask(project, "taskinspect", "stats")[worker.hostname]["ok"]["processes"]
    assert ask(project, "taskcontrol", "rate_limit", "testproject.demo.tasks.add",
               "2/s")[worker.hostname] == {
        "ok": "rate limit of testproject.demo.tasks.add set to 2/s"}
    # the pool processes are replaced to take it
    project.wait("the pool to be replaced", lambda: not set(before) & set(
        ask(project, "taskinspect", "stats")[worker.hostname]["ok"]["processes"]), timeout=15)
    ids = project.shell("from testproject.demo.tasks import add\n"
                        "print(' '.join(add.delay(i, i).id for i in range(6)))").split()
    for task_id in ids:
        project.wait_state(task_id, "SUCCESS", timeout=30)
    done = sorted(_moment(row[0]) for row in project.query(
        "SELECT date_done FROM django_tasks_taskresult WHERE task_name = %s",
        ("testproject.demo.tasks.add",)))
    assert len(done) == 6
    assert (done[-1] - done[0]).total_seconds() >= 2.0  # six at 2/s: 2.5 s apart, no burst


def _moment(value: Any) -> Any:
    import datetime as dt

    return value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))


def test_destination_limits_who_answers_and_acts(project: Project) -> None:
    first = ready(project, "-c", "1", "--pool", "threads", hostname="ctl-a")
    second = ready(project, "-c", "1", "--pool", "threads", hostname="ctl-b")
    assert ask(project, "taskinspect", "ping") == {
        first.hostname: {"ok": "pong"}, second.hostname: {"ok": "pong"}}
    assert ask(project, "taskinspect", "ping", "-d", second.hostname) == {
        second.hostname: {"ok": "pong"}}
    assert ask(project, "taskcontrol", "pool_grow", "--destination", first.hostname) == {
        first.hostname: {"ok": "pool is now 2"}}
    stats = ask(project, "taskinspect", "stats", "-d", f"{first.hostname},{second.hostname}")
    assert {name: reply["ok"]["concurrency"] for name, reply in stats.items()} == {
        first.hostname: 2, second.hostname: 1}
