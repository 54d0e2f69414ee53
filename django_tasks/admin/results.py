from __future__ import annotations

from django.contrib import admin
from django.utils.html import format_html

from ..models import TaskResult
from ..states import TaskState
from .base import ReadOnlyAdmin, pretty_json

STATE_COLOURS = {
    TaskState.PENDING: "#777",
    TaskState.STARTED: "#b36b00",
    TaskState.RETRY: "#b36b00",
    TaskState.SUCCESS: "#1a7f37",
    TaskState.FAILURE: "#cf222e",
    TaskState.REVOKED: "#555",
}


@admin.register(TaskResult)
class TaskResultAdmin(ReadOnlyAdmin):
    list_display = ["task_id", "task_name", "coloured_state", "queue", "worker", "runtime_s",
                    "created_at", "date_done"]
    list_filter = ["state", "task_name", "queue", "created_at", "date_done"]
    search_fields = ["=task_id", "task_name"]
    date_hierarchy = "created_at"
    show_full_result_count = False  # COUNT(*) over millions of rows on every page is slow
    list_per_page = 50
    fields = ["task_id", "task_name", "coloured_state", "queue", "priority", "worker",
              "attempts", "retries", "created_at", "started_at", "date_done", "runtime_s",
              "args_pretty", "kwargs_pretty", "result_pretty", "traceback_pretty"]
    readonly_fields = fields  # type: ignore[assignment]

    @admin.display(description="state", ordering="state")
    def coloured_state(self, obj: TaskResult) -> str:
        colour = STATE_COLOURS.get(TaskState(obj.state), "#000")
        return format_html('<b style="color: {}">{}</b>', colour, obj.state)

    @admin.display(description="runtime (s)")
    def runtime_s(self, obj: TaskResult) -> str:
        runtime = obj.runtime
        return "-" if runtime is None else f"{runtime:.3f}"

    @admin.display(description="args")
    def args_pretty(self, obj: TaskResult) -> str:
        return pretty_json(obj.args)

    @admin.display(description="kwargs")
    def kwargs_pretty(self, obj: TaskResult) -> str:
        return pretty_json(obj.kwargs)

    @admin.display(description="result")
    def result_pretty(self, obj: TaskResult) -> str:
        return pretty_json(obj.result)

    @admin.display(description="traceback")
    def traceback_pretty(self, obj: TaskResult) -> str:
        if not obj.traceback:
            return "-"
        return format_html('<pre class="traceback" style="white-space: pre-wrap">{}</pre>',
                           obj.traceback)
