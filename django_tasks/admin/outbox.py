"""The outbox admin: messages queued in a transaction for Redis or RabbitMQ and not published
yet, and delayed messages held for a broker that cannot delay them (RabbitMQ)."""

from __future__ import annotations

from django.contrib import admin

from .. import clock, outbox
from ..models import OutboxMessage
from .base import ReadOnlyAdmin, ShortIds, envelope_shown, envelope_task_name, pretty_json


@admin.register(OutboxMessage)
class OutboxMessageAdmin(ShortIds, ReadOnlyAdmin):
    actions = None
    list_display_links = None  # the short id links to the row's page (ShortIds)
    list_display = ["short_task_id", "task_name", "queue", "status", "created_at", "due_at",
                    "claimed_until"]
    search_fields = ["task_id"]
    search_help_text = "An exact task id."
    ordering = ["id"]
    sortable_by = ()
    fields = readonly_fields = ("task_id", "task_name", "queue", "status", "created_at",
                                "due_at", "claimed_until", "claimed_by", "body_pretty")

    @admin.display(description="task name")
    def task_name(self, obj: OutboxMessage) -> str:
        return envelope_task_name(obj.body)

    @admin.display(description="status")
    def status(self, obj: OutboxMessage) -> str:
        now = clock.now()
        if obj.claimed_until is not None and obj.claimed_until > now:
            return "being published"
        if obj.due_at is not None:
            return "delayed" if obj.due_at > now else "due: a worker publishes it"
        if obj.created_at > now - outbox.GRACE:
            return "committed: its process publishes it"
        return "left behind: a worker publishes it"

    @admin.display(description="message")
    def body_pretty(self, obj: OutboxMessage) -> str:
        return pretty_json(envelope_shown(obj.body))
