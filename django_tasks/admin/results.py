"""The task result admin: every task the project sent, with its outcome."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.safestring import mark_safe

from .. import serialization
from ..masking import is_sensitive
from ..models import TaskResult
from ..states import PENDING, READY_STATES, TaskState
from . import revoking
from .base import (
    LightChangeList,
    ReadOnlyAdmin,
    breakable,
    local_time,
    preformatted,
    pretty_json,
    short_id,
)
from .filters import QueueFilter, TaskNameFilter

STATE_COLOURS = {
    TaskState.PENDING: "#6e7781",
    TaskState.STARTED: "#0969da",
    TaskState.RETRY: "#bf8700",
    TaskState.SUCCESS: "#1a7f37",
    TaskState.FAILURE: "#cf222e",
    TaskState.REVOKED: "#57606a",
}
#: A task's own states (``update_state(state="PROGRESS")``).
CUSTOM_STATE_COLOUR = "#8250df"

_SECTIONS: list[tuple[str | None, tuple[str, ...]]] = [
    (None, ("task_id", "task_name", "coloured_state", "progress", "queue", "priority")),
    ("Execution", ("worker", "attempts", "retries", "created", "started", "done",
                   "runtime_s")),
    ("Arguments", ("args_pretty", "kwargs_pretty")),
    ("Outcome", ("result_pretty", "traceback_pretty")),
    ("Workflow", ("parent_link", "children_links", "root_link", "group_link")),
]
#: Children listed on a result's page; the rest are a link to the filtered list away.
CHILDREN_SHOWN = 20
#: The workflow ids the list may be filtered by (links from a result's page).
WORKFLOW_FILTERS = ("parent_id", "root_id", "group_id")


@admin.register(TaskResult)
class TaskResultAdmin(ReadOnlyAdmin):
    superuser_may_delete = True
    actions = ["revoke_tasks", "terminate_tasks", "queue_again"]
    rerun_limit = 1000  # "select all" of a filtered list must not queue a million tasks
    # Fits a 1280-pixel screen beside both sidebars: a running task's progress bar sits
    # under its state, long names wrap at their dots, times between date and time.
    list_display = ["short_task_id", "name_shown", "state_and_progress", "queue",
                    "worker_shown", "runtime_s", "created", "done"]
    list_display_links = None  # the short id links to the page itself, beside its copy button
    change_form_template = "admin/django_tasks/taskresult/change_form.html"
    # A date filter instead of date_hierarchy, whose year list is a DISTINCT over the table.
    list_filter = ["state", TaskNameFilter, QueueFilter, "created_at"]
    list_defer = ["args", "kwargs", "result", "traceback"]
    search_fields = ["task_id", "task_name"]  # searched by get_search_results below
    search_help_text = "An exact task id, or part of a task name."
    sortable_by = ["short_task_id", "name_shown", "state_and_progress", "queue", "created"]
    fieldsets = [(title, {"fields": fields}) for title, fields in _SECTIONS]
    readonly_fields = [field for _, fields in _SECTIONS for field in fields]

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[LightChangeList]:
        return ResultChangeList

    def get_actions(self, request: HttpRequest, action_location: Any = None) -> dict[str, Any]:
        # Django 6.1 passes where the actions are shown; Django 5.2 knows no such argument.
        parent: Any = super()
        actions: dict[str, Any] = parent.get_actions(request) if action_location is None \
            else parent.get_actions(request, action_location=action_location)
        # No bulk delete: "select all" of millions of rows is taskprune's job.
        actions.pop("delete_selected", None)
        return actions

    class Media:
        css = {"all": ["django_tasks/admin-lists.css"]}
        js = ["django_tasks/task-id.js"]

    def has_rerun_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("django_tasks.rerun_taskresult"))

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("django_tasks.revoke_taskresult"))

    @admin.action(description="Revoke the selected tasks (queued ones never run)",
                  permissions=["revoke"])
    def revoke_tasks(self, request: HttpRequest,
                     queryset: QuerySet[TaskResult]) -> HttpResponse | None:
        """Mark each selected unfinished task REVOKED, after a confirmation page."""
        return revoking.revoke_action(self, request, queryset, terminate=False)

    @admin.action(description="Terminate the selected tasks (revoke; stop those running)",
                  permissions=["revoke"])
    def terminate_tasks(self, request: HttpRequest,
                        queryset: QuerySet[TaskResult]) -> HttpResponse | None:
        """Revoke, and stop the running ones through the control channel."""
        return revoking.revoke_action(self, request, queryset, terminate=True)

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict[str, Any] | None = None) -> HttpResponse:
        """A result's page, with Revoke and Terminate buttons while the task is unfinished
        (for users who may revoke)."""
        context = dict(extra_context or {})
        if self.has_revoke_permission(request):
            state = (TaskResult.objects.filter(pk=object_id).values_list("state", flat=True)
                     .first() if str(object_id).isdigit() else None)
            if state is not None and state not in READY_STATES:
                context["revoke_buttons"] = revoking.BUTTONS
                context["revoke_return_field"] = revoking.RETURN_FIELD
        return super().change_view(request, object_id, form_url, context)

    @admin.action(description="Queue the selected finished tasks again", permissions=["rerun"])
    def queue_again(self, request: HttpRequest, queryset: QuerySet[TaskResult]) -> None:
        """Send each selected finished task again, with its arguments, queue and priority,
        under a new id (the old row stays as it was). Unfinished ones are skipped."""
        from ..task import send_task

        rows = list(queryset.order_by("created_at")[: self.rerun_limit + 1])
        if len(rows) > self.rerun_limit:
            self.message_user(request, f"More than {self.rerun_limit} tasks selected; queue "
                              f"at most {self.rerun_limit} at a time (filter the list first).",
                              messages.ERROR)
            return
        finished = [row for row in rows if row.state in READY_STATES]
        skipped = len(rows) - len(finished)
        masked = [row for row in finished if is_sensitive(row.task_name)]
        if masked:
            self.message_user(request, f"{masked[0].task_name} is a sensitive task: its "
                              "arguments were never stored, so it cannot be queued again from "
                              "here. Nothing was queued.", messages.ERROR)
            return
        sent = []
        with transaction.atomic():  # all or none
            for row in finished:
                result = send_task(row.task_name, args=serialization.loads(row.args or "[]"),
                                   kwargs=serialization.loads(row.kwargs or "{}"),
                                   queue=row.queue, priority=row.priority,
                                   headers={"rerun_of": row.task_id})
                sent.append(f"{row.task_id} → {result.id}")
        if sent:
            shown = "; ".join(sent[:5]) + (f"; and {len(sent) - 5} more" if len(sent) > 5
                                           else "")
            self.message_user(request, f"Queued {len(sent)} task(s) again: {shown}.",
                              messages.SUCCESS)
        if skipped:
            self.message_user(request, f"Skipped {skipped} task(s) that have not finished "
                              "(PENDING, STARTED or RETRY): they are still queued or running.",
                              messages.WARNING)

    def get_search_results(self, request: HttpRequest, queryset: QuerySet[Any],
                           search_term: str) -> tuple[QuerySet[Any], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        # An id is looked up through the unique index; only other text scans task names.
        by_id = queryset.filter(task_id=term)
        if by_id.exists():
            return by_id, False
        return queryset.filter(task_name__icontains=term), False

    @admin.display(description="state", ordering="state")
    def coloured_state(self, obj: TaskResult) -> str:
        colour = STATE_COLOURS.get(obj.state, CUSTOM_STATE_COLOUR)  # type: ignore[call-overload]
        return format_html(
            '<span class="task-state" style="background: {}; color: #fff; padding: 1px 6px; '
            'border-radius: 3px; font-weight: bold">{}</span>', colour, obj.state)

    @admin.display(description="task id", ordering="task_id")
    def short_task_id(self, obj: TaskResult) -> str:
        """The first 8 characters, linked to the task's page; the whole id on hover and on
        the copy button."""
        url = reverse("admin:django_tasks_taskresult_change", args=[obj.pk])
        return short_id(obj.task_id, url)

    @admin.display(description="task name", ordering="task_name")
    def name_shown(self, obj: TaskResult) -> str:
        return breakable(obj.task_name)

    @admin.display(description="worker", ordering="worker")
    def worker_shown(self, obj: TaskResult) -> str:
        return breakable(obj.worker) if obj.worker else "-"

    @admin.display(description="state", ordering="state")
    def state_and_progress(self, obj: TaskResult) -> str:
        bar = self.progress(obj)
        return format_html('<div class="task-state-cell">{}{}</div>', self.coloured_state(obj),
                           bar if bar != "-" else "")

    @admin.display(description="created", ordering="created_at")
    def created(self, obj: TaskResult) -> str:
        return local_time(obj.created_at)

    @admin.display(description="started", ordering="started_at")
    def started(self, obj: TaskResult) -> str:
        return local_time(obj.started_at)

    @admin.display(description="done", ordering="date_done")
    def done(self, obj: TaskResult) -> str:
        return local_time(obj.date_done)

    @admin.display(description="progress")
    def progress(self, obj: TaskResult) -> str:
        """A bar for a running task whose meta has ``current`` and ``total``."""
        if obj.state in READY_STATES or obj.state == PENDING:
            return "-"
        # The list leaves ``result`` unread: ResultChangeList reads it for running rows.
        text = obj.__dict__.get("result", getattr(obj, "_running_meta", None))
        return progress_bar(text) or "-"

    def lookup_allowed(self, lookup: str, value: str, request: Any = None) -> bool:
        return lookup in WORKFLOW_FILTERS or super().lookup_allowed(lookup, value, request)

    @admin.display(description="parent")
    def parent_link(self, obj: TaskResult) -> str:
        """The task whose outcome queued this one (a chain's previous task, a callback's
        task, a chord's last member)."""
        return _result_link(obj, obj.parent_id)

    @admin.display(description="children")
    def children_links(self, obj: TaskResult) -> str:
        """The tasks this task's outcome queued."""
        rows = list(TaskResult.objects.using(obj._state.db).filter(parent_id=obj.task_id)
                    .order_by("created_at", "id")
                    .values_list("pk", "task_id", "task_name", "state")[:CHILDREN_SHOWN + 1])
        if not rows:
            return "-"
        links: list[str] = [
            format_html('<a href="{}">{}</a> {} {}',
                        reverse("admin:django_tasks_taskresult_change", args=[pk]), task_id,
                        name, state)
            for pk, task_id, name, state in rows[:CHILDREN_SHOWN]]
        if len(rows) > CHILDREN_SHOWN:
            links.append(_filtered_link("parent_id", obj.task_id, "all children"))
        return format_html_join(mark_safe("<br>"), "{}", ((link,) for link in links))

    @admin.display(description="root")
    def root_link(self, obj: TaskResult) -> str:
        """The workflow's first task, and every task of the workflow."""
        if not obj.root_id or obj.root_id == obj.task_id:
            return "-" if not obj.root_id else format_html(
                "this task ({})", _filtered_link("root_id", obj.root_id, "its workflow"))
        return format_html("{} ({})", _result_link(obj, obj.root_id),
                           _filtered_link("root_id", obj.root_id, "its workflow"))

    @admin.display(description="group")
    def group_link(self, obj: TaskResult) -> str:
        """The group (or chord) this task belongs to: its members."""
        if not obj.group_id:
            return "-"
        return _filtered_link("group_id", obj.group_id, obj.group_id)

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
        return preformatted(obj.traceback, "traceback") if obj.traceback else "-"


def _result_link(obj: TaskResult, task_id: str | None) -> str:
    if not task_id:
        return "-"
    row = (TaskResult.objects.using(obj._state.db).filter(task_id=task_id)
           .values_list("pk", "task_name", "state").first())
    if row is None:
        return format_html("{} (no result recorded)", task_id)
    pk, name, state = row
    return format_html('<a href="{}">{}</a> {} {}',
                       reverse("admin:django_tasks_taskresult_change", args=[pk]), task_id,
                       name, state)


def _filtered_link(field: str, value: str, text: str) -> str:
    url = reverse("admin:django_tasks_taskresult_changelist")
    return format_html('<a href="{}?{}">{}</a>', url, urlencode({field: value}), text)


class ResultChangeList(LightChangeList):
    """Reads the meta of the running rows of a page (one query), for their progress bars."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        running = {row.pk: row for row in self.result_list
                   if row.state not in READY_STATES and row.state != PENDING}
        if running:
            for pk, text in TaskResult.objects.using(self.queryset.db).filter(
                    pk__in=list(running)).values_list("pk", "result"):
                running[pk]._running_meta = text


def progress_bar(text: str | None) -> str:
    """A bar for meta ``{"current": 3, "total": 10}`` (JSON text); '' for other values."""
    try:
        meta: Any = serialization.loads(text) if text else None
        current, total = float(meta["current"]), float(meta["total"])
    except (ValueError, TypeError, KeyError):
        return ""
    if not total > 0 or current != current:  # no total, or NaN
        return ""
    share = min(max(current / total, 0.0), 1.0)
    return format_html(
        '<span class="task-progress" title="{} of {}" style="display: inline-flex; '
        'align-items: center; gap: 6px; white-space: nowrap"><span style="display: '
        'inline-block; width: 100px; height: 8px; background: #d0d7de; border-radius: 4px; '
        'overflow: hidden"><span style="display: block; height: 100%; width: {}%; '
        'background: #8250df"></span></span>{}%</span>',
        _number(current), _number(total), f"{share * 100:.1f}", f"{share * 100:.0f}")


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:g}"
