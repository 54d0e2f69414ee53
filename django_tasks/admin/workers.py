"""The worker admin: the ``taskworker`` and ``taskbeat`` processes and whether they still beat."""

from __future__ import annotations

from django.contrib import admin

from ..models import WorkerState
from .base import ReadOnlyAdmin
from .filters import AliveFilter, heartbeat_deadline


@admin.register(WorkerState)
class WorkerStateAdmin(ReadOnlyAdmin):
    superuser_may_delete = True  # rows that killed workers left behind
    list_display = readonly_fields = ("hostname", "kind", "pid", "pool", "concurrency",
                                      "queues", "started_at", "last_heartbeat", "alive")
    list_filter = [AliveFilter, "kind"]
    search_fields = ["hostname"]
    ordering = ["hostname"]

    @admin.display(boolean=True, description="alive")
    def alive(self, obj: WorkerState) -> bool:
        """Alive while the last heartbeat is within three TASKS_HEARTBEAT_SECONDS."""
        return obj.last_heartbeat >= heartbeat_deadline()
