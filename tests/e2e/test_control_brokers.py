"""End-to-end control channel with the broker outside the database (Redis, RabbitMQ): the
requests and replies still go through the database the workers write their heartbeats to."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_service

from .conftest import Project
from .test_control import ask, lines, ready, run

pytestmark = pytest.mark.e2e
REDIS_URL = "redis://127.0.0.1:6379/14"
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"


@pytest.fixture(scope="module")
def backend() -> Iterator[tuple[str, str]]:
    """SQLite only: the broker is what varies here."""
    with tempfile.TemporaryDirectory(prefix="e2e-") as tmp:
        yield "sqlite", f"sqlite:///{tmp}/db.sqlite3"


@pytest.fixture(params=["redis", "amqp"])
def queue(request: pytest.FixtureRequest, project: Project) -> Iterator[str]:
    """Point the project at the broker; the queue name is this test's own."""
    name = f"ctl-{uuid.uuid4().hex[:10]}"
    if request.param == "redis":
        require_service("Redis", "127.0.0.1", 6379)
        from django_tasks.brokers.redis import RedisBroker

        url = f"{REDIS_URL}?prefix=e2e-{name}"
        project.env["TASKS_BROKER_URL"] = url
        yield name
        for worker in project.workers:
            worker.kill()
        broker = RedisBroker(url)
        keys = list(broker._client.scan_iter(f"{broker.prefix}:*"))
        if keys:
            broker._client.delete(*keys)
        broker.close()
        return
    require_service("RabbitMQ", "127.0.0.1", 5672)
    from django_tasks.brokers.amqp import AmqpBroker

    project.env["TASKS_BROKER_URL"] = AMQP_URL
    yield name
    for worker in project.workers:
        worker.kill()
    cleaner = AmqpBroker(AMQP_URL)
    try:
        cleaner._publisher()[0].channel.queue_delete(queue=name)
    finally:
        cleaner.close()


def test_inspect_and_terminate(project: Project, queue: str, tmp_path: Path) -> None:
    worker = ready(project, "-c", "2", "--queues", queue)
    assert ask(project, "taskinspect", "ping") == {worker.hostname: {"ok": "pong"}}
    assert ask(project, "taskinspect", "queues")[worker.hostname]["ok"] == [{"name": queue}]
    marker = tmp_path / "starts"
    task_id = project.shell(
        "from testproject.demo.tasks import slow\n"
        f"print(slow.apply_async(kwargs={{'seconds': 60, 'marker': {str(marker)!r}}}, "
        f"queue={queue!r}).id)").strip()
    project.wait("the slow task to start", lambda: len(lines(marker)) >= 1)
    active = ask(project, "taskinspect", "active")[worker.hostname]["ok"]
    assert [t["id"] for t in active] == [task_id]
    proc = run(project, "taskcontrol", "terminate", task_id, "--timeout", "5")
    assert proc.returncode == 0 and f"terminated {task_id}" in proc.stdout
    project.wait_state(task_id, "REVOKED", timeout=10)
    after = project.shell(
        "from testproject.demo.tasks import add\n"
        f"print(add.apply_async((2, 3), queue={queue!r}).id)").strip()
    project.wait_state(after, "SUCCESS", timeout=20)
    assert ask(project, "taskinspect", "active")[worker.hostname]["ok"] == []
    assert len(lines(marker)) == 1 and project.state(task_id) == "REVOKED"
    assert worker.output().count(f"[{task_id}] received") == 1
