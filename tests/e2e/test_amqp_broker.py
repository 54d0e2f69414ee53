"""End-to-end on the AMQP broker: real ``taskworker`` processes, messages in the local RabbitMQ
(quorum queues), results in the database (SQLite is enough here)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from django_tasks.brokers.amqp import NARROW_AFTER_SECONDS, AmqpBroker
from django_tasks.brokers.channel import DEFAULT_PREFETCH
from tests.conftest import require_service

from . import broker_checks as check
from .conftest import Project

pytestmark = [pytest.mark.e2e,
              pytest.mark.parametrize("backend", ["sqlite"], indirect=True)]
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"


def depth_of(broker: AmqpBroker) -> check.Depth:
    return lambda: broker.depths(["default"])["default"]


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
    check.a_thousand_tasks_run_once(project, depth_of(broker))


@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_two_long_tasks_queued_together_run_side_by_side(
        project: Project, broker: AmqpBroker, pool: str) -> None:
    """No lease to hand back: the processes of a worker idle for a second are sent one
    message each, so the two long tasks go to both (with a fixed prefetch of 16 they went
    to one, three times out of three)."""
    check.long_tasks_queued_together_run_side_by_side(
        project, pool, idle=NARROW_AFTER_SECONDS + 0.5)


def test_kill_9_means_exactly_one_more_run(
        project: Project, broker: AmqpBroker, tmp_path: Path) -> None:
    # No lease: RabbitMQ hands A's delivery back the moment A's connection closes; the
    # second delivery is counted by the quorum queue (x-delivery-count).
    check.kill_9_means_one_more_run(project, depth_of(broker), tmp_path, live_wait=1.0)


def test_sigterm_lets_the_running_task_finish_and_ack(
        project: Project, broker: AmqpBroker, tmp_path: Path) -> None:
    check.sigterm_finishes_the_running_task(project, depth_of(broker), tmp_path)


def test_a_countdown_waits_in_the_database_until_due(
        project: Project, broker: AmqpBroker) -> None:
    check.a_countdown_waits_in_the_database_until_due(project, depth_of(broker))


@pytest.mark.alone  # it times starts
def test_countdowns_held_in_the_database_start_on_time(
        project: Project, broker: AmqpBroker) -> None:
    # The relay learns of a message held in the database on its next run, up to a second on.
    check.countdowns_start_on_time(project, woken=False)


def test_a_cut_connection_mid_drain_loses_nothing(project: Project, broker: AmqpBroker,
                                                  tmp_path: Path) -> None:
    """The worker reaches RabbitMQ through a proxy that cuts every connection (RST) and
    refuses new ones for a few seconds mid-drain: what it held comes back. A process runs
    the rest of its batch (up to the prefetch, 16) before it learns of the cut, and those
    outcomes cannot be confirmed on the dead channel, so up to a batch per process runs
    again."""
    from tests.faults.proxy import REFUSE, Proxy

    with Proxy(("127.0.0.1", 5672)) as proxy:
        check.an_outage_mid_drain_loses_nothing(
            project, depth_of(broker), tmp_path, lambda: proxy.outage(REFUSE),
            "Cannot reach the AMQP broker", reruns=2 * DEFAULT_PREFETCH,
            TASKS_BROKER_URL=f"amqp://guest:guest@127.0.0.1:{proxy.port}//")


def test_a_bad_message_is_rejected_and_the_worker_goes_on(
        project: Project, broker: AmqpBroker) -> None:
    import kombu

    def publish_raw(task_id: str, body: str) -> None:
        session, _ = broker._publisher()
        broker._declare(session, "default")  # the default exchange drops what no queue takes
        kombu.Producer(session.channel).publish(
            body.encode(), routing_key="default", correlation_id=task_id,
            content_type="application/json", content_encoding="utf-8", delivery_mode=2)

    check.a_bad_message_is_rejected(project, depth_of(broker), publish_raw)


@pytest.mark.alone
def test_the_rate_limit_holds_for_two_workers(project: Project, broker: AmqpBroker) -> None:
    # A message waiting for its slot waits in the outbox, published by a relay when due.
    check.rate_limit_holds(project, depth_of(broker))
