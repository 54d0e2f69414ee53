"""End-to-end on the Redis broker: real ``taskworker`` processes, messages in Redis, results in
the database (SQLite is enough: the database only holds results and liveness rows here)."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from django_tasks.brokers.redis import RedisBroker
from tests.conftest import require_service

from . import broker_checks as check
from .broker_checks import lines
from .conftest import Project

pytestmark = [pytest.mark.e2e,
              pytest.mark.parametrize("backend", ["sqlite"], indirect=True)]
REDIS_URL = "redis://127.0.0.1:6379/14"
SHORT_LEASE = {"TASKS_LEASE_SECONDS": "4", "TASKS_HEARTBEAT_SECONDS": "1"}


def depth_of(broker: RedisBroker) -> check.Depth:
    return lambda: sum(broker.depths().values())


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
    check.a_thousand_tasks_run_once(project, depth_of(broker))


def test_kill_9_means_exactly_one_more_run_after_the_lease(
        project: Project, broker: RedisBroker, tmp_path: Path) -> None:
    # 4.5 s beside B: longer than the 4 s lease, which A renews, so B must not get the task.
    check.kill_9_means_one_more_run(project, depth_of(broker), tmp_path, live_wait=4.5,
                                    **SHORT_LEASE)


def test_sigterm_lets_the_running_task_finish_and_ack(
        project: Project, broker: RedisBroker, tmp_path: Path) -> None:
    waiting = check.sigterm_finishes_the_running_task(project, depth_of(broker), tmp_path)
    [again] = broker.fetch(["default"], "check", 10, 30)  # back in the queue, not leased
    assert (again.task_id, again.deliveries) == (waiting, 1)


@pytest.mark.alone  # it times starts
def test_countdowns_start_on_time(project: Project, broker: RedisBroker) -> None:
    check.countdowns_start_on_time(project)


def test_delay_inside_a_transaction_goes_through_the_outbox(
        project: Project, broker: RedisBroker) -> None:
    check.a_rolled_back_enqueue_never_runs(project, depth_of(broker))


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


def test_a_pool_process_that_dies_holding_outbox_claims_delays_nothing(
        project: Project, broker: RedisBroker, tmp_path: Path) -> None:
    """A task queues a follow-up in a transaction, and its pool process is killed in the
    commit hook, after the hook claimed the outbox row and before Redis took the message.
    The supervisor ends the dead process's claims, so the follow-up goes out with the next
    relay, not when the claim runs out (a minute), and it runs once."""
    journal = tmp_path / "journal"
    project.delay("die_after_commit", str(tmp_path / "died"), str(journal))
    project.worker("-c", "1", TASKS_HEARTBEAT_SECONDS="1")
    deadline = time.monotonic() + 20  # the claim alone would hold the row for 60 s
    while len(lines(journal)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [line.split()[0] for line in lines(journal)] == ["S", "E"]
    assert project.count("django_tasks_outboxmessage") == 0
    time.sleep(2)  # nothing else comes
    assert len(lines(journal)) == 2


def test_a_redis_restart_mid_drain_loses_nothing(project: Project, tmp_path: Path) -> None:
    """Redis (append-only, fsync always) is stopped for a few seconds in the middle of a drain
    and started again on the same files."""
    port = check.free_port()
    servers = [check.redis_server(port, tmp_path)]
    url = f"redis://127.0.0.1:{port}/0"
    project.env["TASKS_BROKER_URL"] = url

    @contextlib.contextmanager
    def restart() -> Iterator[None]:
        servers[-1].terminate()  # SIGTERM: Redis writes its append-only file and exits
        servers[-1].wait(10)
        yield
        servers.append(check.redis_server(port, tmp_path))

    try:
        check.an_outage_mid_drain_loses_nothing(
            project, depth_of(RedisBroker(url)), tmp_path, restart,
            "Cannot reach the Redis broker")
    finally:
        for server in servers:
            server.kill()


def test_a_bad_message_is_rejected_and_the_worker_goes_on(
        project: Project, broker: RedisBroker) -> None:
    def publish_raw(task_id: str, body: str) -> None:
        now = repr(time.time())
        broker._run_chunks(broker._publish, [now], ["default", 0, task_id, body, now], 5)

    check.a_bad_message_is_rejected(project, depth_of(broker), publish_raw)


@pytest.mark.alone
def test_the_rate_limit_holds_for_two_workers(project: Project, broker: RedisBroker) -> None:
    check.rate_limit_holds(project, depth_of(broker))
