"""The Prometheus view (``django_tasks.metrics.view``, mounted at /metrics by testproject)."""

from __future__ import annotations

import datetime as dt
import importlib
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import Client

from django_tasks import states
from django_tasks.result import TaskOutcome
from django_tasks.results.database import DatabaseResultStore
from django_tasks.results.prune import prune_expired

from .factories import make_message, make_worker, now

pytestmark = pytest.mark.django_db


def run(task_id: str, name: str = "demo.add", state: str = states.SUCCESS,
        runtime: float = 0.003, ago: dt.timedelta = dt.timedelta(0)) -> TaskOutcome:
    done = now() - ago
    return TaskOutcome(task_id=task_id, task_name=name, state=state, date_done=done,
                       started_at=done - dt.timedelta(seconds=runtime))


def scrape(client: Client) -> str:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    return response.content.decode()


def test_task_counts_runtimes_queues_and_workers(client: Client) -> None:
    DatabaseResultStore().count_outcomes([
        run("a"), run("b"), run("c", runtime=2.0),
        run("f", name="demo.fail", state=states.FAILURE, runtime=0.0002)])
    make_worker("w1@host")
    make_worker("w2@gone", beat_ago=3600)
    make_message("m-1", queue="mail")
    text = scrape(client)
    assert 'django_tasks_tasks_total{state="SUCCESS",task="demo.add"} 3.0' in text
    assert 'django_tasks_tasks_total{state="FAILURE",task="demo.fail"} 1.0' in text
    assert "# TYPE django_tasks_task_runtime_seconds histogram" in text
    assert 'django_tasks_task_runtime_seconds_bucket{le="0.0032",task="demo.add"} 2.0' in text
    assert 'django_tasks_task_runtime_seconds_bucket{le="+Inf",task="demo.add"} 3.0' in text
    assert 'django_tasks_task_runtime_seconds_count{task="demo.add"} 3.0' in text
    assert 'django_tasks_task_runtime_seconds_sum{task="demo.add"} 2.006' in text
    assert 'django_tasks_queue_depth{queue="mail"} 1.0' in text
    assert 'django_tasks_queue_depth{queue="default"} 0.0' in text
    assert 'django_tasks_workers_online{kind="worker"} 1.0' in text
    assert 'django_tasks_worker_last_heartbeat_timestamp_seconds{hostname="w2@gone"' in text


def test_counts_never_go_down_when_old_minutes_are_pruned(client: Client) -> None:
    store = DatabaseResultStore()
    store.count_outcomes([run("old", ago=dt.timedelta(days=3)), run("new")])
    line = 'django_tasks_tasks_total{state="SUCCESS",task="demo.add"} 2.0'
    assert line in scrape(client)
    report = prune_expired(store=store)
    assert report.counters == 2  # the old minute row and its hour row
    assert line in scrape(client)


def test_a_clear_error_without_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    monkeypatch.setitem(sys.modules, "prometheus_client.core", None)
    monkeypatch.delitem(sys.modules, "django_tasks.metrics", raising=False)
    with pytest.raises(ImproperlyConfigured,
                       match=r'pip install "django-taskworker\[prometheus\]"'):
        importlib.import_module("django_tasks.metrics")
    monkeypatch.delitem(sys.modules, "django_tasks.metrics", raising=False)


def test_queues_ready_delayed_and_in_flight(client: Client) -> None:
    make_message("r-1", queue="mail")
    make_message("d-1", queue="mail", delay=600)
    make_message("l-1", queue="mail", delay=30, lease_owner="w1@host-1")
    text = scrape(client)
    assert 'django_tasks_queue_depth{queue="mail"} 3.0' in text
    assert 'django_tasks_queue_ready{queue="mail"} 1.0' in text
    assert 'django_tasks_queue_delayed{queue="mail"} 1.0' in text
    assert 'django_tasks_queue_in_flight{queue="mail"} 1.0' in text
    assert 'django_tasks_queue_in_flight{queue="default"} 0.0' in text


def test_in_flight_has_no_sample_where_the_broker_cannot_know(
        client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    from django_tasks.brokers.base import QueueCounts
    from django_tasks.conf import get_broker

    monkeypatch.setattr(get_broker(), "queue_counts",
                        lambda queues=(): {"default": QueueCounts(4, 2, None)})
    text = scrape(client)
    assert 'django_tasks_queue_depth{queue="default"} 6.0' in text
    assert 'django_tasks_queue_ready{queue="default"} 4.0' in text
    assert "# TYPE django_tasks_queue_in_flight gauge" in text
    assert "django_tasks_queue_in_flight{" not in text
