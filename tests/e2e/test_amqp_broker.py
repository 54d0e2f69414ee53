"""End-to-end on the AMQP broker: real ``taskworker`` processes, messages in the local RabbitMQ
(quorum queues), results in the database (SQLite is enough here)."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from django_tasks.brokers.amqp import AmqpBroker
from tests.conftest import require_service

from .conftest import Project, alive, children, group_members

pytestmark = [pytest.mark.e2e,
              pytest.mark.parametrize("backend", ["sqlite"], indirect=True)]
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"
RESULTS = "django_tasks_taskresult"


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _drop(queue: str) -> None:
    cleaner = AmqpBroker(AMQP_URL)
    try:
        cleaner._publisher()[0].channel.queue_delete(queue=queue)
    finally:
        cleaner.close()


@pytest.fixture
def broker(project: Project) -> Iterator[AmqpBroker]:
    """Point the project at RabbitMQ; its ``default`` queue is new for each test."""
    require_service("RabbitMQ", "127.0.0.1", 5672)
    _drop("default")
    project.env["TASKS_BROKER_URL"] = AMQP_URL
    broker = AmqpBroker(AMQP_URL)
    try:
        yield broker
    finally:
        for worker in project.workers:
            worker.kill()
        broker.close()
        _drop("default")


def test_a_thousand_tasks_all_run_once(project: Project, broker: AmqpBroker) -> None:
    project.shell("from testproject.demo.tasks import add\n"
                  "for i in range(1000):\n"
                  "    add.delay(i, i)\n")
    assert broker.depths(["default"]) == {"default": 1000}
    project.worker("-c", "2", "-P", "prefork", "-l", "warning")
    project.wait("1000 results", lambda: project.count(RESULTS, "state = 'SUCCESS'") == 1000,
                 timeout=30)
    rows = project.query(f"SELECT args, result, attempts FROM {RESULTS}")
    pairs = sorted((json.loads(args), json.loads(result)) for args, result, _ in rows)
    assert pairs == [([i, i], 2 * i) for i in range(1000)]
    assert {attempts for _, _, attempts in rows} == {1}
    project.wait("the queue to be empty", lambda: broker.depths(["default"]) == {"default": 0},
                 timeout=10)


def test_kill_9_means_exactly_one_more_run(
        project: Project, broker: AmqpBroker, tmp_path: Path) -> None:
    marker = tmp_path / "starts"
    first = project.worker("-c", "1", hostname="A")
    project.wait_ready(first)
    task_id = project.delay("slow", seconds=10, marker=str(marker))
    project.wait("the task to start on A", lambda: len(lines(marker)) == 1)
    second = project.worker("-c", "1", hostname="B")
    project.wait_ready(second)
    time.sleep(1)
    assert len(lines(marker)) == 1, "the task was delivered again while its worker lived"

    pool = children(first.pid)
    assert pool, "worker A has no pool process"
    assert project.state(task_id) != "SUCCESS", "the task ended before A could be killed"
    os.kill(first.pid, signal.SIGKILL)
    project.wait("A's pool processes to die with it",
                 lambda: not any(alive(pid) for pid in pool), timeout=5)
    project.wait("no process of A to remain", lambda: not group_members(first.pid), timeout=5)

    project.wait_state(task_id, "SUCCESS", timeout=20)
    assert lines(marker) == [f"{task_id} A", f"{task_id} B"]
    result = project.result(task_id)
    assert result is not None
    assert (result["worker"], result["attempts"]) == ("B", 2)  # x-delivery-count
    project.wait("the queue to be empty", lambda: broker.depths(["default"]) == {"default": 0},
                 timeout=10)
    assert second.running()


def test_sigterm_lets_the_running_task_finish_and_ack(
        project: Project, broker: AmqpBroker, tmp_path: Path) -> None:
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
    # The finished task was acked; the waiting one is back in the queue.
    project.wait("the waiting task back in the queue",
                 lambda: broker.depths(["default"]) == {"default": 1}, timeout=5)


def test_a_countdown_waits_in_the_database_until_due(
        project: Project, broker: AmqpBroker) -> None:
    task_id = project.shell("from testproject.demo.tasks import add\n"
                            "print(add.apply_async((2, 3), countdown=3).id)").strip()
    [(due_at,)] = project.query("SELECT due_at FROM django_tasks_outboxmessage "
                                "WHERE task_id = %s", (task_id,))
    assert due_at is not None
    assert broker.depths(["default"]) == {"default": 0}
    queued = time.monotonic()
    project.worker("-c", "1")
    project.wait_state(task_id, "SUCCESS", timeout=20)
    assert time.monotonic() - queued >= 2.5
    assert project.count("django_tasks_outboxmessage") == 0


def test_a_cut_connection_mid_drain_loses_nothing(project: Project, broker: AmqpBroker,
                                                  tmp_path: Path) -> None:
    """The worker reaches RabbitMQ through a proxy that cuts every connection (RST) and
    refuses new ones for a few seconds mid-drain: what it held comes back, nothing is lost,
    and the worker goes on by itself."""
    from tests.faults.proxy import REFUSE, Proxy

    journal = tmp_path / "journal"
    count = 300
    project.shell("from testproject.demo.tasks import record\n"
                  f"record.delay_many([({str(journal)!r}, 0.01)] * {count})\n")
    with Proxy(("127.0.0.1", 5672)) as proxy:
        worker = project.worker(
            "-c", "2", "-l", "warning",
            TASKS_BROKER_URL=f"amqp://guest:guest@127.0.0.1:{proxy.port}//")
        project.wait("a quarter of the drain",
                     lambda: project.count(RESULTS, "state = 'SUCCESS'") >= count // 4)
        with proxy.outage(REFUSE):
            time.sleep(3)
        project.wait(f"all {count} tasks", lambda: project.count(
            RESULTS, "state = 'SUCCESS'") == count, timeout=90)
        assert worker.running()
        assert "Cannot reach the AMQP broker" in worker.output()  # the cut was seen
    starts = [line.split()[1] for line in lines(journal) if line.startswith("S ")]
    assert len(set(starts)) == count  # none lost
    assert len(starts) - count <= 4, "more re-runs than one batch per process"
    project.wait("the queue to be empty", lambda: broker.depths(["default"]) == {"default": 0},
                 timeout=20)


def test_a_bad_message_is_rejected_and_the_worker_goes_on(
        project: Project, broker: AmqpBroker) -> None:
    import kombu

    session, _ = broker._publisher()
    broker._declare(session, "default")  # the default exchange drops what no queue takes
    kombu.Producer(session.channel).publish(
        b"not json {", routing_key="default", correlation_id="bad-1",
        content_type="application/json", content_encoding="utf-8", delivery_mode=2)
    after = project.delay("add", 1, 1)
    worker = project.worker("-c", "1")
    project.wait_state(after, "SUCCESS")
    project.wait_state("bad-1", "FAILURE")
    bad = project.result("bad-1")
    assert bad is not None and json.loads(bad["result"])["exc_type"] == "DecodeError"
    project.wait("the queue to be empty", lambda: broker.depths(["default"]) == {"default": 0},
                 timeout=10)
    assert worker.running()
