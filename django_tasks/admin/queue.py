"""The queue admin: messages waiting on the database broker (``django://``)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from ..models import QueuedMessage
from .base import ReadOnlyAdmin, ShortIds, envelope_shown, envelope_task_name, pretty_json
from .filters import MessageStatusFilter, QueueFilter


@admin.register(QueuedMessage)
class QueuedMessageAdmin(ShortIds, ReadOnlyAdmin):
    actions = None
    list_display_links = None  # the short id links to the row's page (ShortIds)
    list_display = ["short_task_id", "task_name", "queue", "priority", "status", "visible_at",
                    "lease_owner", "deliveries", "created_at"]
    list_filter = [QueueFilter, MessageStatusFilter]
    search_fields = ["task_id"]
    search_help_text = "An exact task id."
    ordering = ["id"]  # the order they were sent in, through the primary key
    sortable_by = ()
    fields = readonly_fields = ("task_id", "task_name", "queue", "priority", "status",
                                "visible_at", "lease_owner", "deliveries", "created_at",
                                "body_pretty")

    def get_search_results(self, request: HttpRequest, queryset: QuerySet[Any],
                           search_term: str) -> tuple[QuerySet[Any], bool]:
        term = search_term.strip()
        return (queryset.filter(task_id=term) if term else queryset), False

    @admin.display(description="task name")
    def task_name(self, obj: QueuedMessage) -> str:
        return envelope_task_name(obj.body)

    @admin.display(description="status")
    def status(self, obj: QueuedMessage) -> str:
        due = obj.visible_at <= dt.datetime.now(dt.UTC)
        if obj.lease_owner:
            return "lease ran out" if due else "held by a worker"
        return "ready" if due else "delayed"

    @admin.display(description="message")
    def body_pretty(self, obj: QueuedMessage) -> str:
        return pretty_json(envelope_shown(obj.body))
