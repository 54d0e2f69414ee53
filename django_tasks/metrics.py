"""Prometheus metrics, as a view the project mounts in its URLs::

    # urls.py
    import django_tasks.metrics

    urlpatterns = [..., path("metrics", django_tasks.metrics.view)]

Needs the ``prometheus`` extra (``pip install "django-taskworker[prometheus]"``, which
installs ``prometheus-client``); importing this module without it raises
``ImproperlyConfigured`` saying so. Every scrape reads the per-minute counters the workers
write (``results/counters.py``), the broker's queue depths and the workers' heartbeat rows:
a few queries, whatever the number of result rows. The metrics:

- ``django_tasks_tasks_total{task, state}``: runs that ended in ``state`` (a counter);
- ``django_tasks_task_runtime_seconds{task}``: a histogram of runtimes (``_bucket``,
  ``_sum``, ``_count``; buckets doubling from 0.1 ms);
- ``django_tasks_queue_depth{queue}``: messages in the queue, as ``Broker.queue_counts()``
  counts them, and its parts ``django_tasks_queue_ready``, ``django_tasks_queue_delayed`` and
  ``django_tasks_queue_in_flight`` (no sample where the broker cannot know: in flight on AMQP);
- ``django_tasks_workers_online{kind}``: workers (and beats) whose heartbeat is recent;
- ``django_tasks_worker_last_heartbeat_timestamp_seconds{hostname, kind}``.

The view answers anyone who can reach it: mount it where only Prometheus can (an internal
port or path), or wrap it, e.g. in ``django.contrib.admin.views.decorators.
staff_member_required`` or a check of a bearer token.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse

try:
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
    )
except ImportError as exc:  # pragma: no cover - the extra is installed in the test suite
    raise ImproperlyConfigured(
        "django_tasks.metrics needs prometheus-client, which is not installed: "
        'pip install "django-taskworker[prometheus]" (or prometheus-client).') from exc

from . import clock
from .models.counters import BUCKETS
from .results import counters, stats


class TasksCollector:
    """Reads everything at collection time: nothing is kept in this process."""

    def collect(self) -> Iterator[Any]:
        alias = stats.counters_alias()
        if alias is not None:
            yield from self._tasks(stats.totals(alias))
        seen = stats.workers(clock.now())
        queues = stats.queue_depths(seen)
        yield from self._queues(queues)
        online = GaugeMetricFamily("django_tasks_workers_online",
                                   "Workers and beats whose heartbeat is recent",
                                   labels=["kind"])
        for kind in ("worker", "beat"):
            online.add_metric([kind], sum(1 for w in seen if w["alive"] and w["kind"] == kind))
        yield online
        beat = GaugeMetricFamily("django_tasks_worker_last_heartbeat_timestamp_seconds",
                                 "When each worker or beat last wrote its heartbeat",
                                 labels=["hostname", "kind"])
        for w in seen:
            beat.add_metric([w["hostname"], w["kind"]], w["last_heartbeat"])
        yield beat

    def _queues(self, queues: dict[str, Any]) -> Iterator[Any]:
        """The depth of each queue and its parts; a part the broker cannot know (in flight
        on AMQP) has no sample."""
        depth = GaugeMetricFamily("django_tasks_queue_depth",
                                  "Messages in each queue: ready, delayed and in flight "
                                  "(as far as the broker knows)", labels=["queue"])
        parts = {part: GaugeMetricFamily(f"django_tasks_queue_{part}", text, labels=["queue"])
                 for part, text in (("ready", "Messages due and waiting for a worker"),
                                    ("delayed", "Messages not due yet (countdown, eta, retry)"),
                                    ("in_flight", "Messages held by workers now"))}
        for queue, counts in queues["counts"].items():
            depth.add_metric([queue], queues["depths"][queue])
            for part, family in parts.items():
                if counts[part] is not None:
                    family.add_metric([queue], counts[part])
        yield depth
        yield from parts.values()

    def _tasks(self, rows: list[dict[str, Any]]) -> Iterator[Any]:
        total = CounterMetricFamily("django_tasks_tasks", "Task runs by final state",
                                    labels=["task", "state"])
        runtimes: dict[str, dict[str, Any]] = {}
        for row in rows:
            total.add_metric([row["task_name"], row["state"]], row["count"])
            kept = runtimes.setdefault(row["task_name"], {"sum": 0.0, "buckets": [0] * BUCKETS})
            kept["sum"] += row["runtime_sum"]
            kept["buckets"] = [a + b for a, b in zip(kept["buckets"], row["buckets"],
                                                     strict=True)]
        yield total
        histogram = HistogramMetricFamily("django_tasks_task_runtime_seconds",
                                          "Task runtimes, from start to end",
                                          labels=["task"])
        for name, kept in runtimes.items():
            cumulative, seen = [], 0
            for index, n in enumerate(kept["buckets"]):
                seen += n
                bound = counters.upper_bound(index)
                cumulative.append(("+Inf" if bound == float("inf") else f"{bound:g}", seen))
            histogram.add_metric([name], cumulative, sum_value=kept["sum"])
        yield histogram


def view(request: HttpRequest) -> HttpResponse:
    """The metrics in Prometheus' text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TasksCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
