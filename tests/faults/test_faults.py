"""The fault suite at CI scale: every scenario of ``tests.faults.scenarios`` against real
workers on SQLite, PostgreSQL and MariaDB (the outage and dropped-connection scenarios need a
server, so not SQLite). Each test fails with the scenario's figures, the problems behind its
verdict, examples and the workers' notable log lines; ``python -m tests.faults`` runs the
same scenarios bigger and writes docs/reliability.md.

Only structural properties are asserted here (nothing lost, nothing unexpected, no
unexplained duplicate, workers alive, the fault really happened): no throughput or duration.
Waits end on conditions, or give up when nothing has moved for 15 s.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.conftest import require_service
from tests.e2e.conftest import Project

from .harness import CI, Figures
from .scenarios import (
    OTHER_BROKERS,
    POOLS,
    bad_rows,
    enqueue,
    freeze,
    kill_loop,
    outage,
    poison,
    terminate,
)

pytestmark = [pytest.mark.e2e, pytest.mark.faults]
BROKER_SERVERS = {"redis": ("Redis", "127.0.0.1", 6379),
                  "amqp": ("RabbitMQ", "127.0.0.1", 5672)}
servers_only = pytest.mark.parametrize("backend", ["postgres", "mysql"], indirect=True)


def verdict(rows: list[Figures]) -> None:
    assert rows, "the scenario produced no figures"
    for row in rows:
        print(row.summary())
    failed = [row for row in rows if not row.passed]
    if failed:
        pytest.fail("\n\n".join(row.explain() for row in failed), pytrace=False)


def test_kill_loop(project: Project) -> None:
    verdict(kill_loop(project, CI))


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # the results' database
@pytest.mark.parametrize("broker", list(OTHER_BROKERS))
def test_kill_loop_on_other_brokers(project: Project, broker: str) -> None:
    require_service(*BROKER_SERVERS[broker])
    verdict(kill_loop(project, CI, broker=broker))


@pytest.mark.parametrize("pool", list(POOLS))
def test_poison_among_innocents(project: Project, pool: str) -> None:
    verdict(poison(project, CI, pools=(pool,)))


def test_frozen_worker_loses_its_task_and_its_late_outcome(project: Project) -> None:
    verdict(freeze(project, CI))


@servers_only
@pytest.mark.parametrize("mode", ["refuse", "blackhole"])
def test_database_outage_mid_drain(project: Project, mode: str) -> None:
    seconds = dict(CI.outages)[mode]
    verdict(outage(project, replace(CI, outages=((mode, seconds),))))


@servers_only
def test_server_drops_the_workers_connections(project: Project) -> None:
    verdict(terminate(project, CI))


def test_bad_rows_among_innocents(project: Project) -> None:
    verdict(bad_rows(project, CI))


def test_enqueue_commits_and_rollbacks_under_concurrency(project: Project) -> None:
    verdict(enqueue(project, CI))
