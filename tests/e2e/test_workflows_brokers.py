"""End to end on Redis and on RabbitMQ: a chain through a chord, run by a real worker. The
chord is counted in the result store's database; each member's outcome, its count and its
follow-ups commit together (the follow-ups through the outbox), before its ack."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from django_tasks.brokers.base import Broker
from tests.conftest import require_service

from .conftest import Project

pytestmark = [pytest.mark.e2e,
              pytest.mark.parametrize("backend", ["sqlite"], indirect=True)]
REDIS_URL = "redis://127.0.0.1:6379/13"
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"


def _redis(project: Project) -> Iterator[Broker]:
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


def _amqp(project: Project) -> Iterator[Broker]:
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
        broker._publisher()[0].channel.queue_delete(queue="default")
        broker.close()


@pytest.fixture(params=["redis", "amqp"])
def broker(request: pytest.FixtureRequest, project: Project) -> Iterator[Broker]:
    yield from (_redis if request.param == "redis" else _amqp)(project)


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
    assert project.count("django_tasks_taskresult", "task_name = %s",
                         ("testproject.demo.tasks.tsum",)) == 2  # one ran, one FAILURE row
    chords = project.query("SELECT size, done, state FROM django_tasks_taskgroup "
                           "ORDER BY size DESC")
    # The failed chord counted its succeeding member if it finished before the failure.
    assert chords[0] == (100, 100, "SUCCESS") and chords[1] in ((2, 0, "FAILURE"),
                                                                 (2, 1, "FAILURE"))
    project.wait("every follow-up published",
                 lambda: project.count("django_tasks_outboxmessage") == 0, timeout=10)
    project.wait("the broker to be empty",
                 lambda: sum(broker.depths(["default"]).values()) == 0, timeout=10)
