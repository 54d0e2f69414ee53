"""List filters whose choices cost no scan of the table they filter.

Django's default filter for a plain column runs ``SELECT DISTINCT`` over the whole table on
every page; on millions of results that is the slowest query of the page. These take their
choices from what the process already knows (the task registry, the settings, the small
worker table) and keep any value given in the URL.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest

from ..conf import task_settings
from ..models import WorkerState
from ..registry import registry


def heartbeat_deadline() -> dt.datetime:
    """Workers whose last heartbeat is older than this look dead (three missed beats)."""
    limit = dt.timedelta(seconds=3 * float(task_settings.HEARTBEAT_SECONDS))
    return dt.datetime.now(dt.UTC) - limit


def known_queues() -> set[str]:
    """The default queue, the queues of registered tasks and the queues workers consume."""
    queues = {str(task_settings.DEFAULT_QUEUE)}
    queues.update(str(registry.get(name).queue) for name in registry if registry.get(name).queue)
    for consumed in WorkerState.objects.values_list("queues", flat=True):
        queues.update(q.strip() for q in consumed.split(",") if q.strip())
    return queues


class _ExactValueFilter(admin.SimpleListFilter):
    field = ""

    def choices_known(self) -> set[str]:
        raise NotImplementedError

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        values = self.choices_known()
        if self.value():
            values.add(str(self.value()))
        return [(v, v) for v in sorted(values)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(**{self.field: value}) if value else queryset


class TaskNameFilter(_ExactValueFilter):
    title = "task name"
    parameter_name = field = "task_name"

    def choices_known(self) -> set[str]:
        return set(registry)


class QueueFilter(_ExactValueFilter):
    title = "queue"
    parameter_name = field = "queue"

    def choices_known(self) -> set[str]:
        return known_queues()


class MessageStatusFilter(admin.SimpleListFilter):
    """Where a queued message stands: waiting, delayed, held by a worker, or lease run out."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("ready", "ready"), ("delayed", "delayed (countdown, eta, retry)"),
                ("leased", "held by a worker"), ("expired", "lease ran out")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        now = dt.datetime.now(dt.UTC)
        free, due = Q(lease_owner__isnull=True), Q(visible_at__lte=now)
        conditions = {"ready": free & due, "delayed": free & ~due,
                      "leased": ~free & ~due, "expired": ~free & due}
        condition = conditions.get(str(self.value()))
        return queryset if condition is None else queryset.filter(condition)


class AliveFilter(admin.SimpleListFilter):
    title = "alive"
    parameter_name = "alive"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "alive"), ("no", "no heartbeat lately")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "yes":
            return queryset.filter(last_heartbeat__gte=heartbeat_deadline())
        if self.value() == "no":
            return queryset.filter(last_heartbeat__lt=heartbeat_deadline())
        return queryset
