"""End-to-end on the Redis broker: real ``taskworker`` processes, messages in Redis, results in
the database (SQLite is enough: the database only holds results and liveness rows here)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from django_tasks.brokers.redis import RedisBroker
from tests.conftest import IN_CI, require_service

from .conftest import Project, alive, children, group_members

pytestmark = [pytest.mark.e2e,
              pytest.mark.parametrize("backend", ["sqlite"], indirect=True)]
REDIS_URL = "redis://127.0.0.1:6379/14"
RESULTS = "django_tasks_taskresult"
SHORT_LEASE = {"TASKS_LEASE_SECONDS": "4", "TASKS_HEARTBEAT_SECONDS": "1"}


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@pytest.fixture
def broker(project: Project) -> Iterator[RedisBroker]:
    """Point the project (workers and the shell that queues tasks) at Redis, under a key
    prefix of this test's own; the broker returned reads the same keys."""
    require_service("Redis", "127.0.0.1", 6379)
    url = f"{REDIS_URL}?prefix=e2e-{uuid.uuid4().hex[:12]}"
    project.env["TASKS_BROKER_URL"] = url
    broker = RedisBroker(url)
    try:
        yield broker
    finally:
        for worker in project.workers:
            worker.kill()
        keys = list(broker._client.scan_iter(f"{broker.prefix}:*"))
        if keys:
            broker._client.delete(*keys)
        broker.close()


def test_a_thousand_tasks_all_run_once(project: Project, broker: RedisBroker) -> None:
    project.shell("from testproject.demo.tasks import add\n"
                  "for i in range(1000):\n"
                  "    add.delay(i, i)\n")
    assert broker.depths() == {"default": 1000}
    project.worker("-c", "2", "-P", "prefork", "-l", "warning")
    project.wait("1000 results", lambda: project.count(RESULTS, "state = 'SUCCESS'") == 1000,
                 timeout=60)
    rows = project.query(f"SELECT args, result, attempts FROM {RESULTS}")
    pairs = sorted((json.loads(args), json.loads(result)) for args, result, _ in rows)
    assert pairs == [([i, i], 2 * i) for i in range(1000)]
    assert {attempts for _, _, attempts in rows} == {1}
    project.wait("the broker to be empty", lambda: broker.depths() == {}, timeout=10)


def test_kill_9_means_exactly_one_more_run_after_the_lease(
        project: Project, broker: RedisBroker, tmp_path: Path) -> None:
    marker = tmp_path / "starts"
    first = project.worker("-c", "1", hostname="A", **SHORT_LEASE)
    project.wait_ready(first)
    task_id = project.delay("slow", seconds=14, marker=str(marker))
    project.wait("the task to start on A", lambda: len(lines(marker)) == 1)
    second = project.worker("-c", "1", hostname="B", **SHORT_LEASE)
    project.wait_ready(second)
    time.sleep(4.5)  # longer than the 4 s lease: A renews it, so B must not get the task
    assert len(lines(marker)) == 1, "the task was delivered again while its worker lived"

    pool = children(first.pid)
    assert pool, "worker A has no pool process"
    assert project.state(task_id) != "SUCCESS", "the task ended before A could be killed"
    os.kill(first.pid, signal.SIGKILL)
    project.wait("A's pool processes to die with it",
                 lambda: not any(alive(pid) for pid in pool), timeout=5)
    project.wait("no process of A to remain", lambda: not group_members(first.pid), timeout=5)

    project.wait_state(task_id, "SUCCESS", timeout=30)
    assert lines(marker) == [f"{task_id} A", f"{task_id} B"]
    result = project.result(task_id)
    assert result is not None
    assert (result["worker"], result["attempts"]) == ("B", 2)
    project.wait("the broker to be empty", lambda: broker.depths() == {}, timeout=10)
    assert second.running()


def test_sigterm_lets_the_running_task_finish_and_ack(
        project: Project, broker: RedisBroker, tmp_path: Path) -> None:
    marker = tmp_path / "starts"
    worker = project.worker("-c", "1")
    task_id = project.delay("slow", seconds=3, marker=str(marker))
    project.wait("the slow task to start", lambda: len(lines(marker)) == 1)
    waiting = project.delay("add", 1, 2)  # queued behind the running task
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.wait_exit(20) == 0
    assert project.state(task_id) == "SUCCESS"
    assert project.state(waiting) == "PENDING"
    assert "warm shutdown" in worker.output()
    # The finished task was acked; the waiting one is back in the queue, not leased.
    assert broker.depths() == {"default": 1}
    [again] = broker.fetch(["default"], "check", 10, 30)
    assert (again.task_id, again.deliveries) == (waiting, 1)


def test_delay_inside_a_transaction_goes_through_the_outbox(
        project: Project, broker: RedisBroker) -> None:
    out = project.shell(
        "from django.db import transaction\n"
        "from testproject.demo.tasks import add\n"
        "try:\n"
        "    with transaction.atomic():\n"
        "        print(add.delay(1, 2).id)\n"
        "        raise RuntimeError('roll back')\n"
        "except RuntimeError:\n"
        "    pass\n"
        "with transaction.atomic():\n"
        "    print(add.delay(3, 4).id)\n")
    rolled_back, committed = out.split()
    assert broker.depths() == {"default": 1}  # published to Redis after the commit
    project.worker("-c", "1")
    project.wait_state(committed, "SUCCESS")
    assert project.result(rolled_back) is None
    assert project.count("django_tasks_outboxmessage") == 0


def test_a_task_that_kills_its_process_ends_as_a_poison_message(
        project: Project, broker: RedisBroker) -> None:
    died = project.delay("die")
    after = project.delay("add", 20, 22)
    worker = project.worker("-c", "1", TASKS_MAX_DELIVERIES="2")
    project.wait_state(died, "FAILURE", timeout=30)
    project.wait_state(after, "SUCCESS", timeout=30)
    lost = project.result(died)
    assert lost is not None
    reason = json.loads(lost["result"])
    assert reason["exc_type"] == "WorkerLostError"
    assert "was running 2 times when its process died" in reason["exc_message"]
    project.wait("the broker to be empty", lambda: broker.depths() == {}, timeout=10)
    assert worker.running()


# -- faults ----------------------------------------------------------------------------------


def test_a_crash_between_commit_and_publish_is_covered_by_the_outbox(
        project: Project, broker: RedisBroker, tmp_path: Path) -> None:
    """The process that queued the task dies right after its commit, before its commit hook
    publishes: the outbox row stays, and a worker publishes it; the task runs once."""
    journal = tmp_path / "journal"
    out = project.shell(
        "import os\n"
        "from django.db import transaction\n"
        "from testproject.demo.tasks import record\n"
        "with transaction.atomic():\n"
        "    transaction.on_commit(lambda: os._exit(0))  # runs before the publish hook\n"
        f"    print(record.delay({str(journal)!r}).id, flush=True)\n")
    task_id = out.split()[-1]
    assert project.count("django_tasks_outboxmessage") == 1
    assert broker.depths() == {}  # nothing reached Redis
    project.worker("-c", "1")
    project.wait_state(task_id, "SUCCESS", timeout=40)  # after the relay's grace period
    assert [line.split()[:2] for line in lines(journal)] == [["S", task_id], ["E", task_id]]
    assert project.count("django_tasks_outboxmessage") == 0


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _redis_server(port: int, workdir: Path) -> subprocess.Popen[bytes]:
    import shutil

    server = shutil.which("redis-server")
    if server is None:
        if IN_CI:
            pytest.fail("redis-server is not installed, and CI=true forbids skipping.")
        pytest.skip("redis-server is not installed")
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "yes", "--appendfsync", "always", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return proc
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"redis-server did not start on port {port}")


def test_a_redis_restart_mid_drain_loses_nothing(project: Project, tmp_path: Path) -> None:
    """Redis (append-only, fsync always) is stopped for a few seconds in the middle of a drain
    and started again on the same files: every task ends SUCCESS, none is lost, and the
    worker goes on by itself."""
    port = _free_port()
    server = _redis_server(port, tmp_path)
    url = f"redis://127.0.0.1:{port}/0"
    project.env["TASKS_BROKER_URL"] = url
    journal = tmp_path / "journal"
    count = 400
    try:
        project.shell("from testproject.demo.tasks import record\n"
                      f"record.delay_many([({str(journal)!r}, 0.01)] * {count})\n")
        worker = project.worker("-c", "2", "-l", "warning")
        project.wait("a quarter of the drain",
                     lambda: project.count(RESULTS, "state = 'SUCCESS'") >= count // 4)
        server.terminate()  # SIGTERM: Redis writes its append-only file and exits
        server.wait(10)
        time.sleep(3)
        server = _redis_server(port, tmp_path)
        project.wait(f"all {count} tasks", lambda: project.count(
            RESULTS, "state = 'SUCCESS'") == count, timeout=90)
        assert worker.running()
        assert "Cannot reach the Redis broker" in worker.output()  # the outage was seen
        starts = [line.split()[1] for line in lines(journal) if line.startswith("S ")]
        assert len(set(starts)) == count  # none lost
        repeated = len(starts) - count
        assert repeated <= 4, f"{repeated} tasks ran twice"  # at most one batch per process
        project.wait("the queue to be empty",
                     lambda: RedisBroker(url).depths() == {}, timeout=20)
    finally:
        server.kill()


def test_a_bad_message_is_rejected_and_the_worker_goes_on(
        project: Project, broker: RedisBroker) -> None:
    now = repr(time.time())
    broker._run_chunks(broker._publish, [now], ["default", 0, "bad-1", "not json {", now], 5)
    after = project.delay("add", 1, 1)
    worker = project.worker("-c", "1")
    project.wait_state(after, "SUCCESS")
    project.wait_state("bad-1", "FAILURE")
    bad = project.result("bad-1")
    assert bad is not None and json.loads(bad["result"])["exc_type"] == "DecodeError"
    project.wait("the broker to be empty", lambda: broker.depths() == {}, timeout=10)
    assert worker.running()
