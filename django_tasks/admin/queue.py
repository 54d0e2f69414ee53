from __future__ import annotations

import datetime as dt

from django.contrib import admin

from ..conf import task_settings
from ..models import QueuedMessage, WorkerState
from ..serialization import loads
from .base import ReadOnlyAdmin, pretty_json


@admin.register(QueuedMessage)
class QueuedMessageAdmin(ReadOnlyAdmin):
    list_display = ["task_id", "task_name", "queue", "priority", "visible_at", "lease_owner",
                    "deliveries", "created_at"]
    list_filter = ["queue", "priority"]
    search_fields = ["=task_id"]
    show_full_result_count = False
    fields = ["task_id", "queue", "priority", "visible_at", "lease_owner", "deliveries",
              "created_at", "body_pretty"]
    readonly_fields = fields  # type: ignore[assignment]

    @admin.display(description="task name")
    def task_name(self, obj: QueuedMessage) -> str:
        try:
            return str(loads(obj.body)["headers"]["task"])
        except Exception:  # noqa: BLE001 - an undecodable message is shown as such
            return "(undecodable)"

    @admin.display(description="message")
    def body_pretty(self, obj: QueuedMessage) -> str:
        return pretty_json(obj.body)


@admin.register(WorkerState)
class WorkerStateAdmin(ReadOnlyAdmin):
    list_display = ["hostname", "pid", "pool", "concurrency", "queues", "started_at",
                    "last_heartbeat", "alive"]
    readonly_fields = list_display  # type: ignore[assignment]

    @admin.display(boolean=True, description="alive")
    def alive(self, obj: WorkerState) -> bool:
        limit = dt.timedelta(seconds=3 * float(task_settings.HEARTBEAT_SECONDS))
        return obj.last_heartbeat >= dt.datetime.now(dt.UTC) - limit
