"""The worker admin: the ``taskworker`` and ``taskbeat`` processes and whether they still beat."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from ..models import WorkerState
from .base import ReadOnlyAdmin, breakable, local_time
from .filters import AliveFilter, heartbeat_deadline


@admin.register(WorkerState)
class WorkerStateAdmin(ReadOnlyAdmin):
    """Rows a killed worker left behind may be deleted (by superusers); a live worker's row
    may not: its next heartbeat would write it again."""

    superuser_may_delete = True
    actions = ["delete_stopped"]
    list_display = ("hostname_shown", "kind", "pid", "pool", "concurrency", "queues_shown",
                    "started", "heartbeat", "done", "failed", "alive")
    readonly_fields = ("hostname", "kind", "pid", "pool", "concurrency", "queues", "started",
                       "heartbeat", "done", "failed", "alive")
    list_filter = [AliveFilter, "kind"]
    search_fields = ["hostname"]
    ordering = ["hostname"]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and self.alive(obj):
            return False
        return super().has_delete_permission(request, obj)

    def get_actions(self, request: HttpRequest, action_location: Any = None) -> dict[str, Any]:
        parent: Any = super()
        actions: dict[str, Any] = parent.get_actions(request) if action_location is None \
            else parent.get_actions(request, action_location=action_location)
        actions.pop("delete_selected", None)  # it would delete live workers' rows too
        return actions

    @admin.action(description="Delete the rows of the selected workers that stopped",
                  permissions=["delete"])
    def delete_stopped(self, request: HttpRequest, queryset: QuerySet[WorkerState]) -> None:
        alive = queryset.filter(last_heartbeat__gte=heartbeat_deadline())
        kept = list(alive.values_list("hostname", flat=True))
        deleted, _ = queryset.exclude(pk__in=alive.values("pk")).delete()
        if deleted:
            self.message_user(request, f"Deleted {deleted} row(s) of stopped workers.",
                              messages.SUCCESS)
        if kept:
            self.message_user(request, f"Kept {len(kept)} row(s) of workers that are alive "
                              f"({', '.join(kept)}): their next heartbeat would write the row "
                              "again. Stop the worker first.", messages.WARNING)

    class Media:
        css = {"all": ["django_tasks/admin-lists.css"]}

    @admin.display(description="hostname", ordering="hostname")
    def hostname_shown(self, obj: WorkerState) -> str:
        return breakable(obj.hostname)

    @admin.display(description="queues", ordering="queues")
    def queues_shown(self, obj: WorkerState) -> str:
        # A comma with a space lets a long list wrap instead of widening the table.
        return ", ".join(q for q in obj.queues.split(",") if q)

    @admin.display(description="started", ordering="started_at")
    def started(self, obj: WorkerState) -> str:
        return local_time(obj.started_at)

    @admin.display(description="last heartbeat", ordering="last_heartbeat")
    def heartbeat(self, obj: WorkerState) -> str:
        return local_time(obj.last_heartbeat)

    @admin.display(description="done", ordering="tasks_done")
    def done(self, obj: WorkerState) -> int:
        """Tasks the worker ran since it started, as of its last heartbeat."""
        return obj.tasks_done

    @admin.display(description="failed", ordering="tasks_failed")
    def failed(self, obj: WorkerState) -> int:
        return obj.tasks_failed

    @admin.display(boolean=True, description="alive")
    def alive(self, obj: WorkerState) -> bool:
        """Alive while the last heartbeat is within three TASKS_HEARTBEAT_SECONDS."""
        return obj.last_heartbeat >= heartbeat_deadline()
