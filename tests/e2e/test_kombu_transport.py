"""End-to-end on kombu's transports: real ``taskworker`` processes, messages as files in a
folder of the test's own (the filesystem transport) or as rows of kombu's tables in a
PostgreSQL schema of the test's own (the SQLAlchemy transport), results in the database
(SQLite is enough here)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import kombu
import pytest
from django.test import override_settings

from django_tasks.brokers.kombu_transport import KombuBroker
from tests.conftest import schema_of_its_own

from . import broker_checks as check
from .conftest import Project

pytestmark = [pytest.mark.e2e,
              pytest.mark.parametrize("backend", ["sqlite"], indirect=True),
              # kombu 5.7's SQLAlchemy models load with ``noload``, which SQLAlchemy 2.1
              # deprecates: a warning of kombu's, about its own tables.
              pytest.mark.filterwarnings(
                  "ignore:The ``noload`` loader strategy is deprecated:DeprecationWarning")]
#: Idle workers look every 50 ms (kombu's default for polled transports is a second).
OPTIONS = {"polling_interval": 0.05}


@pytest.fixture(params=["filesystem", "sqlalchemy"])
def broker(request: pytest.FixtureRequest, project: Project,
           tmp_path: Path) -> Iterator[KombuBroker]:
    """Point the project at the transport's messages; the test's own broker reads them."""
    with contextlib.ExitStack() as stack:
        if request.param == "filesystem":
            url = f"filesystem://{tmp_path / 'messages'}"
        else:
            url, _ = stack.enter_context(schema_of_its_own())
        project.env["TASKS_BROKER_URL"] = url
        project.env["TASKS_BROKER_TRANSPORT_OPTIONS"] = json.dumps(OPTIONS)
        with override_settings(TASKS_BROKER_TRANSPORT_OPTIONS=OPTIONS):
            broker = KombuBroker(url)
        # kombu's SQLAlchemy transport creates its tables and queue rows on first use: once
        # here, not by the worker and a shell starting side by side (PostgreSQL refuses one
        # of two CREATE TABLEs of the same name at once).
        broker.depths(["default"])
        try:
            yield broker
        finally:
            for worker in project.workers:
                worker.kill()  # their connections close: the schema can be dropped
            broker.close()


def depth_of(broker: KombuBroker) -> check.Depth:
    return lambda: broker.depths(["default"])["default"]


def test_a_thousand_tasks_all_run_once(project: Project, broker: KombuBroker) -> None:
    check.a_thousand_tasks_run_once(project, depth_of(broker))


def test_sigterm_lets_the_running_task_finish_and_ack(
        project: Project, broker: KombuBroker, tmp_path: Path) -> None:
    check.sigterm_finishes_the_running_task(project, depth_of(broker), tmp_path)


def test_a_countdown_waits_in_the_database_until_due(
        project: Project, broker: KombuBroker) -> None:
    check.a_countdown_waits_in_the_database_until_due(project, depth_of(broker))


def test_a_rolled_back_enqueue_never_runs(project: Project, broker: KombuBroker) -> None:
    check.a_rolled_back_enqueue_never_runs(project, depth_of(broker))


def test_a_bad_message_is_rejected_and_the_worker_goes_on(
        project: Project, broker: KombuBroker) -> None:
    def publish_raw(task_id: str, body: str) -> None:
        session, _ = broker._publisher()
        broker._declare(session, "default")
        kombu.Producer(session.channel).publish(
            body.encode(), exchange="", routing_key="default", correlation_id=task_id,
            content_type="application/json", content_encoding="utf-8", delivery_mode=2)

    check.a_bad_message_is_rejected(project, depth_of(broker), publish_raw)
