"""End-to-end fair dispatch: a long task does not keep the messages its process claimed with
it from idle processes (Celery's prefetch trap; its answer was ``-O fair``). SQLite only:
what is tested is the worker's, not the database's. RabbitMQ's is in
``test_amqp_broker.py``."""

from __future__ import annotations

import pytest

from . import broker_checks as check
from .conftest import Project

pytestmark = [pytest.mark.e2e,
              pytest.mark.parametrize("backend", ["sqlite"], indirect=True)]


@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_two_long_tasks_claimed_together_run_side_by_side(project: Project, pool: str) -> None:
    check.long_tasks_queued_together_run_side_by_side(project, pool)
