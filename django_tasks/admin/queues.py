"""The queues page: per queue, the messages ready, delayed and in flight on the broker, the
workers online that consume it, and what still waits in the outbox.

Listed in the admin as *Queues* beside the other pages of django_tasks (a proxy model,
``models.Queues``); the same people as the dashboard see it (``PageAdmin``). Its data is
``results.stats.queue_depths()``: one call to the broker (``Broker.queue_counts``), the
worker rows, and one query on the outbox where the broker has one, whatever the number of
messages.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from .. import clock
from ..conf import get_broker
from ..models import Queues
from ..results import stats
from .base import PageAdmin, local_time

#: What each number means, by broker (the URL's scheme).
MEANINGS: dict[str, dict[str, str]] = {
    "database": {
        "ready": "Rows due now, waiting for a worker, with those whose lease ran out (their "
                 "worker stopped renewing it): the next worker to fetch takes them.",
        "delayed": "Rows not due yet: a countdown, an eta, a retry's backoff, a rate-limited "
                   "task waiting for its slot.",
        "in_flight": "Rows leased to a worker that keeps renewing the lease: running, or "
                     "fetched and waiting for a free process.",
    },
    "redis": {
        "ready": "The queue's ready set, with the delayed messages now due and the leases "
                 "that ran out (the next fetch moves them there).",
        "delayed": "Messages in the queue's delayed set not due yet: a countdown, an eta, a "
                   "retry's backoff, a rate-limited task waiting for its slot.",
        "in_flight": "Messages in the queue's leased set whose lease is current: running, "
                     "or fetched and waiting for a free process.",
    },
    "amqp": {
        "ready": "The server's count of the queue: messages not sent to any consumer yet.",
        "delayed": "Countdowns, etas and retries the outbox table holds until they are due "
                   "(RabbitMQ does not delay messages here).",
        "in_flight": "Not known: RabbitMQ does not tell an AMQP client how many messages its "
                     "consumers hold unacknowledged (a worker holds up to the URL's prefetch "
                     "per process). Its management plugin shows them; taskinspect active and "
                     "reserved list what each worker runs and holds.",
    },
    "memory": {
        "ready": "Messages due now in this process.",
        "delayed": "Messages not due yet.",
        "in_flight": "Messages leased to a consumer.",
    },
}
KINDS = {"django": "database", "redis": "redis", "rediss": "redis", "amqp": "amqp",
         "amqps": "amqp", "pyamqp": "amqp", "memory": "memory"}


def broker_kind(url: str) -> str:
    return KINDS.get(url.split("://", 1)[0], "")


@admin.register(Queues)
class QueuesAdmin(PageAdmin):
    def get_urls(self) -> list[URLPattern]:
        info = self.opts.app_label, self.opts.model_name
        return [path("", self.admin_site.admin_view(self.queues_view),
                     name="{}_{}_changelist".format(*info))]

    def queues_view(self, request: HttpRequest) -> HttpResponse:
        self.check_viewer(request)
        seen = stats.workers(clock.now())
        data = stats.queue_depths(seen)
        broker = get_broker()
        kind = broker_kind(broker.url)
        context = {
            **self.admin_site.each_context(request),
            "title": "Queues",
            "opts": self.opts,
            "broker": data["broker"],
            "broker_kind": kind,
            "error": data["error"],
            "outbox": data["outbox"],
            "rows": self._rows(data, kind),
            "totals": self._totals(data),
            "meanings": MEANINGS.get(kind, {}),
            "counted_at": local_time(clock.now()),
            "workers_online": sum(1 for w in seen if w["alive"] and w["kind"] == "worker"),
            "outbox_url": reverse("admin:django_tasks_outboxmessage_changelist"),
            "workers_url": reverse("admin:django_tasks_workerstate_changelist"),
            "dashboard_url": reverse("admin:django_tasks_dashboard_changelist"),
        }
        return TemplateResponse(request, "admin/django_tasks/queues.html", context)

    @staticmethod
    def _rows(data: dict[str, Any], kind: str) -> list[dict[str, Any]]:
        """The table's rows; a queue's name links to its messages where the admin lists
        them (the database broker's queue table)."""
        listed = reverse("admin:django_tasks_queuedmessage_changelist") \
            if kind == "database" else None
        return [{"queue": queue, **counts,
                 "url": f"{listed}?{urlencode({'queue': queue})}" if listed else None,
                 "idle": not counts["consumers"] and bool(counts["ready"])}
                for queue, counts in data["counts"].items()]

    @staticmethod
    def _totals(data: dict[str, Any]) -> dict[str, int | None]:
        """Each column's sum; ``None`` where some queue's count is not known."""
        totals: dict[str, int | None] = {}
        for part in ("ready", "delayed", "in_flight", "outbox"):
            values = [counts[part] for counts in data["counts"].values()]
            totals[part] = None if any(v is None for v in values) else sum(values)
        return totals
