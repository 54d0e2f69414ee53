"""End to end on Redis and on RabbitMQ: workflows run by a real worker, the checks of
``workflow_checks.py`` that the database broker runs too, and a chain through a chord. The
chord is counted in the result store's database; each member's outcome, its count and its
follow-ups commit together (the follow-ups through the outbox), before its ack."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from django_tasks.brokers.base import Broker
from tests.conftest import require_service

from . import workflow_checks as check
from .conftest import Project

pytestmark = [pytest.mark.e2e,
              pytest.mark.parametrize("backend", ["sqlite"], indirect=True)]
REDIS_URL = "redis://127.0.0.1:6379/13"
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"


class Queues:
    """Queue names of this test's own (deleted afterwards on RabbitMQ, where queues are
    shared by everyone on the server; Redis keys are under the test's own prefix)."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def new(self) -> str:
        self.names.append(f"e2e-flow-{uuid.uuid4().hex[:12]}")
        return self.names[-1]


def _redis(project: Project, queues: Queues) -> Iterator[Broker]:
    from django_tasks.brokers.redis import RedisBroker

    require_service("Redis", "127.0.0.1", 6379)
    url = f"{REDIS_URL}?prefix=e2e-flow-{uuid.uuid4().hex[:12]}"
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


def _amqp(project: Project, queues: Queues) -> Iterator[Broker]:
    from django_tasks.brokers.amqp import AmqpBroker

    require_service("RabbitMQ", "127.0.0.1", 5672)
    project.env["TASKS_BROKER_URL"] = AMQP_URL
    broker = AmqpBroker(AMQP_URL)
    broker._publisher()[0].channel.queue_delete(queue="default")  # new for this test
    try:
        yield broker
    finally:
        for worker in project.workers:
            worker.kill()
        for queue in ("default", *queues.names):
            broker._publisher()[0].channel.queue_delete(queue=queue)
        broker.close()


@pytest.fixture
def queues() -> Queues:
    return Queues()


@pytest.fixture(params=["redis", "amqp"])
def broker(request: pytest.FixtureRequest, project: Project, queues: Queues
           ) -> Iterator[Broker]:
    yield from (_redis if request.param == "redis" else _amqp)(project, queues)


def depth_of(broker: Broker) -> check.Depth:
    return lambda queue="default": broker.depths([queue]).get(queue, 0)


def test_link_chain_and_retries(project: Project, broker: Broker) -> None:
    check.link_chain_and_retries(project, depth_of(broker))


def test_a_group_and_a_chord_of_a_thousand_complete_without_polling(
        project: Project, broker: Broker) -> None:
    check.a_group_and_a_chord_of_a_thousand(project, depth_of(broker))


def test_a_chord_with_a_failing_member_fails_within_a_second(
        project: Project, broker: Broker) -> None:
    check.a_failing_member_fails_the_chord_within_a_second(project, depth_of(broker))


def test_killed_workers_send_each_follow_up_once(project: Project, broker: Broker,
                                                 queues: Queues, tmp_path: Path) -> None:
    """The follow-ups go through the outbox, written in the transaction that stores the
    outcome, and are published after its commit (or by a worker's relay, when the worker
    that committed them died first). On Redis a killed worker's messages come back when
    their lease runs out; on RabbitMQ when its connection drops."""
    from django_tasks.brokers.redis import RedisBroker

    # Redis remembers each outbox row it took (publish_once) and drops a second copy.
    twice = check.killed_workers_send_each_follow_up_once(
        project, depth_of(broker), tmp_path, queues.new(), outbox=True,
        dedup=isinstance(broker, RedisBroker), **check.SHORT_LEASE)
    print(f"published, then left claimed by a killed worker: {twice}")


def test_a_chain_through_a_chord(project: Project, broker: Broker) -> None:
    out = project.shell(
        "from django_tasks import chain, chord, group\n"
        "from testproject.demo.tasks import add, multiply, tsum, fail\n"
        "flow = (add.s(1, 1) | group(add.s(i) for i in range(100)) | tsum.s()"
        " | multiply.s(2)).apply_async()\n"
        "failed = chord([add.s(1, 1), fail.si('no')], tsum.s()).apply_async()\n"
        "print(flow.id)\nprint(failed.id)\n").split()
    flow, failed = out
    project.worker("-c", "2", "-P", "prefork")
    project.wait_state(flow, "SUCCESS", timeout=60)
    project.wait_state(failed, "FAILURE", timeout=30)
    result = project.result(flow)
    assert result is not None and int(result["result"]) == 2 * sum(2 + i for i in range(100))
    assert check.of(project, "tsum") == 2  # one ran, one FAILURE row
    chords = project.query("SELECT size, done, state FROM django_tasks_taskgroup "
                           "ORDER BY size DESC")
    # The failed chord counted its succeeding member if it finished before the failure.
    assert chords[0] == (100, 100, "SUCCESS") and chords[1] in ((2, 0, "FAILURE"),
                                                                 (2, 1, "FAILURE"))
    check.drained(project, depth_of(broker))
