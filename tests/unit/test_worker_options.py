"""The worker's options, its start-up banner, and how it takes its name in the worker table."""

from __future__ import annotations

import datetime as dt
import io
import os
import socket
import threading
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connections

from django_tasks.brokers.memory import MemoryBroker
from django_tasks.exceptions import WorkerNameInUse
from django_tasks.models import WorkerState
from django_tasks.worker import Worker
from django_tasks.worker import heartbeat as heartbeat_module
from django_tasks.worker.main import expand_hostname


def _worker(**options: Any) -> Worker:
    defaults: dict[str, Any] = {"hostname": "unit@host", "concurrency": 2, "heartbeat": 0.1,
                                "lease": 30, "out": io.StringIO()}
    return Worker(**{**defaults, **options})


# -- options ------------------------------------------------------------------------------


@pytest.mark.parametrize(("options", "error"), [
    ({"pool": "gevent"}, "--pool 'gevent' is not one of prefork, threads, solo"),
    ({"concurrency": 0}, "--concurrency must be at least 1"),
    ({"queues": [" ", ""]}, "--queues names no queue"),
    ({"hostname": "w@%x"}, "unknown variable %x"),
    ({"prefetch": 0}, "--prefetch must be a whole number of at least 1"),
    ({"shutdown_timeout": -1}, "--shutdown-timeout must be a number of seconds, 0 or more"),
])
def test_bad_options_say_what_to_fix(options: dict[str, Any], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        _worker(**options)


def test_bad_options_are_command_errors() -> None:
    with pytest.raises(CommandError, match="--concurrency must be at least 1"):
        call_command("taskworker", "--concurrency", "0")


def test_queues_are_trimmed_and_solo_runs_one_task_at_a_time() -> None:
    worker = _worker(queues=[" mail", "default ", ""], pool="solo", concurrency=8)
    assert worker.queues == ["mail", "default"]
    assert worker.concurrency == 1


def test_hostname_variables_expand_like_celery() -> None:
    host = socket.gethostname()
    short, _, domain = host.partition(".")
    assert expand_hostname("w1@%h") == f"w1@{host}"
    assert expand_hostname("%n-%d") == f"{short}-{domain}"
    assert expand_hostname("100%%") == "100%"
    assert _worker(hostname="").hostname == f"worker{os.getpid()}@{host}"


def test_banner_lists_transport_queues_and_tasks(settings: Any) -> None:
    from django_tasks.worker import banner as logs

    settings.TASKS_BROKER_URL = "memory://"
    out = io.StringIO()
    logs.banner(_worker(queues=["mail", "default"], out=out), out)
    text = out.getvalue()
    assert " -------------- unit@host v" in text
    assert ".> transport:   memory://" in text
    assert ".> concurrency: 2 (prefork)" in text
    assert ".> queues:      mail, default" in text
    assert "  . testproject.demo.tasks.add" in text


def test_a_password_in_the_broker_url_is_hidden() -> None:
    broker = MemoryBroker("memory://user:s3cret@127.0.0.1:1/")
    assert broker.describe() == "memory://user:**@127.0.0.1:1/"
    assert "s3cret" not in broker.describe()


# -- the worker's name --------------------------------------------------------------------


def _row(name: str, *, pid: int = 999_999, age: float = 0.0) -> WorkerState:
    moment = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=age)
    return WorkerState.objects.create(hostname=name, pid=pid, pool="prefork", concurrency=1,
                                      queues="default", started_at=moment,
                                      last_heartbeat=moment)


@pytest.mark.django_db
def test_a_free_name_is_taken_at_once() -> None:
    heartbeat_module.register(_worker(hostname="free@host"))
    row = WorkerState.objects.get(hostname="free@host")
    assert (row.pid, row.concurrency, row.queues) == (os.getpid(), 2, "default")


@pytest.mark.django_db
def test_the_row_of_a_worker_gone_longer_than_a_lease_is_taken_over() -> None:
    _row("old@host", age=120)
    heartbeat_module.register(_worker(hostname="old@host", heartbeat=60))  # no waiting
    assert WorkerState.objects.get(hostname="old@host").pid == os.getpid()


@pytest.mark.django_db
def test_a_row_whose_heartbeat_stands_still_is_taken_over_after_two_beats() -> None:
    _row("killed@host")  # fresh, but nobody renews it: a worker killed a moment ago
    heartbeat_module.register(_worker(hostname="killed@host", heartbeat=0.05), poll=0.01)
    assert WorkerState.objects.get(hostname="killed@host").pid == os.getpid()


@pytest.mark.django_db(transaction=True)
def test_a_live_worker_keeps_its_name() -> None:
    _row("busy@host", pid=4242)
    stop = threading.Event()

    def keep_beating() -> None:  # the other worker, renewing its row
        try:
            while not stop.wait(0.02):
                WorkerState.objects.filter(hostname="busy@host").update(
                    last_heartbeat=dt.datetime.now(dt.UTC))
        finally:
            connections.close_all()

    other = threading.Thread(target=keep_beating)
    other.start()
    try:
        with pytest.raises(WorkerNameInUse, match=r"Another worker named 'busy@host' is "
                                                  r"running \(pid 4242.*--hostname"):
            heartbeat_module.register(_worker(hostname="busy@host", heartbeat=1), poll=0.01)
    finally:
        stop.set()
        other.join()
    assert WorkerState.objects.get(hostname="busy@host").pid == 4242


@pytest.mark.django_db
def test_goodbye_removes_only_this_workers_row() -> None:
    _row("shared@host", pid=4242)  # another process holds the name: not ours to delete
    heartbeat_module.goodbye(_worker(hostname="shared@host"))
    assert WorkerState.objects.filter(hostname="shared@host").exists()
    mine = _worker(hostname="mine@host")
    heartbeat_module.register(mine)
    heartbeat_module.goodbye(mine)
    assert not WorkerState.objects.filter(hostname="mine@host").exists()


# -- recycling --------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, -3, True, 1.5])
def test_recycling_limits_must_be_whole_numbers(value: object) -> None:
    with pytest.raises(ValueError, match="--max-tasks-per-child must be a whole number"):
        _worker(max_tasks_per_child=value)
    with pytest.raises(ValueError, match="--max-memory-per-child must be a whole number"):
        _worker(max_memory_per_child=value)


def test_the_recycler_counts_tasks_and_reads_memory() -> None:
    from django_tasks.worker.recycle import Recycler, rss_kib

    assert not Recycler().after_task()  # no limits: never
    by_count = Recycler(max_tasks=3)
    assert [by_count.after_task() for _ in range(3)] == [False, False, True]
    assert by_count.triggered.is_set()
    assert by_count.reason == "it ran 3 tasks (--max-tasks-per-child 3)"
    assert 1000 < rss_kib() < 10_000_000  # a Python process: MiBs, not bytes or pages
    by_memory = Recycler(max_memory_kib=1)
    assert by_memory.after_task()
    assert "KiB of memory (--max-memory-per-child 1)" in by_memory.reason
    assert not Recycler(max_memory_kib=100_000_000).after_task()


def test_the_banner_shows_recycling(settings: Any) -> None:
    from django_tasks.worker import banner as logs

    settings.TASKS_BROKER_URL = "memory://"
    out = io.StringIO()
    logs.banner(_worker(max_tasks_per_child=100, max_memory_per_child=200_000), out)
    assert ".> recycle:     each pool process after 100 tasks or 200,000 KiB resident" \
        in out.getvalue()
    out = io.StringIO()
    logs.banner(_worker(pool="threads"), out)
    assert "recycle" not in out.getvalue()


# -- stalls -----------------------------------------------------------------------------------


def test_stalled_names_what_stopped_making_progress() -> None:
    from django_tasks.process.stall import stalled
    from django_tasks.worker.slots import Running

    busy = Running(1, 1, "a", "t", "q", 1, 0, 0.0, 0.0, 0.0)
    now = 1000.0
    assert stalled([("p1", 990.0, None), ("p2", 0.0, busy)], 995.0, 30, now) is None
    assert stalled([("p1", 960.0, None)], 995.0, 30, now) == \
        "p1 has not completed a poll of the broker for 40s"
    assert stalled([("p1", float("inf"), None)], 995.0, 30, now) is None  # stopped
    assert stalled([], 900.0, 30, now) == "its heartbeat has not succeeded for 100s"


@pytest.mark.parametrize("value", [0, -1, "60"])
def test_a_bad_stall_timeout_is_refused(value: object) -> None:
    with pytest.raises(ValueError, match="--stall-timeout must be a positive number"):
        _worker(stall_timeout=value)


@pytest.mark.parametrize("value", [0, 3, "120"])
def test_a_stall_timeout_shorter_than_two_heartbeats_fails_the_checks(
        settings: Any, value: object) -> None:
    from django_tasks.checks import check_settings

    settings.TASKS_WORKER_STALL_TIMEOUT = value
    assert [e.id for e in check_settings()].count("django_tasks.E009") == 1
    settings.TASKS_WORKER_STALL_TIMEOUT = None
    assert "django_tasks.E009" not in [e.id for e in check_settings()]
