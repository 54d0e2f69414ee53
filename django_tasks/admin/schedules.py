"""The periodic task admin: schedules in words, last runs with their results, run now.

- The list reads each row's schedule with the row (one joined query) and the states of the
  page's last results in one more query, whatever the number of rows.
- **Enable** and **Disable** need the change permission. Enabling computes the next run at
  once; disabling clears it. Either is an admin edit as ``beat/sync.py`` sees it: a row
  from the settings stays as set here until its entry in the settings changes.
- **Run now** needs ``django_tasks.run_periodictask``. It queues the task at once, built and
  published as the beat builds a due run (``beat.entries.message_for``, ``publish_many``),
  and leaves the schedule alone: ``next_run_at``, ``last_run_at`` (which anchors interval
  schedules and marks a clocked one done) and ``total_run_count`` (scheduled runs only, as
  in django-celery-beat) stay as they were. It records ``last_task_id``, so that the list's
  "last run" shows the manual run's result and links to it. No ``BeatSlot`` is claimed: a
  manual run is no slot of the schedule. Disabled rows can be run now; expired ones cannot.
- Schedules are made and edited without leaving the form, through the + and pencil icons
  of the schedule fields; their admins and forms are in ``schedule_forms.py``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.timesince import timesince, timeuntil

from .. import clock
from ..beat.entries import EntryError, message_for
from ..exceptions import TaskError
from ..message import Message
from ..models import BeatSlot, PeriodicTask, TaskResult
from ..models.schedules import PeriodicTaskQuerySet
from ..publishing import publish_many
from ..registry import registry
from ..states import TaskState
from .base import ReadOnlyAdmin
from .results import STATE_COLOURS
from .schedule_forms import PeriodicTaskForm, moment

KINDS = ("interval", "crontab", "clocked")
SETTINGS_NOTICE = (
    "This periodic task comes from <code>TASKS_BEAT_SCHEDULE</code> and is synced each time "
    "<code>taskbeat</code> starts. Edits made here are kept while its entry in the settings "
    "stays as it was at the last sync; once the entry changes, the next sync <strong>"
    "overwrites this row with the settings</strong> (and logs a warning naming it). If the "
    "entry is removed from the settings, the row is disabled, not deleted; deleting the row "
    "here while the entry remains only makes the next sync create it again.")


# -- the last result of each row ----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LastResult:
    pk: int
    state: str
    created_at: dt.datetime


_LAST_RESULT = "_admin_last_result"


def attach_last_results(rows: list[PeriodicTask]) -> None:
    """Read the result of each row's last task, for all ``rows`` in one query."""
    ids = {row.last_task_id for row in rows if row.last_task_id}
    found = {task_id: LastResult(pk, state, created) for task_id, pk, state, created in
             TaskResult.objects.filter(task_id__in=ids).order_by()
             .values_list("task_id", "pk", "state", "created_at")} if ids else {}
    for row in rows:
        setattr(row, _LAST_RESULT, found.get(row.last_task_id))


def last_result(row: PeriodicTask) -> LastResult | None:
    """The row's last result as attached for the list, else read now (the change page)."""
    if not hasattr(row, _LAST_RESULT):
        attach_last_results([row])
    result: LastResult | None = getattr(row, _LAST_RESULT)
    return result


class PeriodicTaskChangeList(ChangeList):
    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        # The page's rows, read once and kept in the queryset's cache, which the
        # template iterates again.
        attach_last_results(list(self.result_list))


def from_now(value: dt.datetime) -> str:
    """``in 40 seconds``, ``in 3 hours, 5 minutes``, ``2 minutes ago``."""
    seconds = (value - clock.now()).total_seconds()
    if abs(seconds) < 60:
        words = f"{int(abs(seconds))} seconds"
    else:
        words = timeuntil(value) if seconds > 0 else timesince(value)
    return f"in {words}" if seconds >= 0 else f"{words} ago"


def state_badge(state: str) -> str:
    colour = STATE_COLOURS.get(TaskState(state), "#000") if state in TaskState.values \
        else "#000"
    return format_html(
        '<span class="task-state" style="background: {}; color: #fff; padding: 1px 6px; '
        'border-radius: 3px; font-weight: bold">{}</span>', colour, state)


# -- periodic tasks -----------------------------------------------------------------------


class ScheduleKindFilter(admin.SimpleListFilter):
    title = "schedule kind"
    parameter_name = "kind"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(kind, kind) for kind in KINDS]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        kind = self.value()
        return queryset.filter(**{f"{kind}__isnull": False}) if kind in KINDS else queryset


_SECTIONS: list[tuple[str | None, dict[str, Any]]] = [
    (None, {"fields": ("name", "task", "enabled", "description")}),
    ("Schedule", {"fields": ("interval", "crontab", "clocked", "schedule_words", "start_time",
                             "one_off"),
                  "description": "Choose exactly one: an interval, a crontab or a clocked "
                                 "time. Make a new one with +, change one with the pencil."}),
    ("Arguments", {"fields": ("args", "kwargs")}),
    ("Options", {"fields": ("queue", "priority", "expires", "expire_seconds")}),
    ("Runs", {"fields": ("next_run_at", "last_run_at", "total_run_count", "last_task_id",
                         "last_result_link", "source", "date_changed")}),
]


@admin.register(PeriodicTask)
class PeriodicTaskAdmin(admin.ModelAdmin):
    form = PeriodicTaskForm
    actions = ["enable", "disable", "run_now"]
    run_now_limit = 100  # each is a message; "select all" should not queue thousands
    list_display = ["name", "task_name", "schedule_words", "next_run", "last_run",
                    "total_run_count", "enabled", "source"]
    list_filter = ["enabled", ScheduleKindFilter, "source"]
    list_select_related = ["interval", "crontab", "clocked"]
    search_fields = ["name", "task"]
    search_help_text = "Part of a name or of a task name."
    show_facets = admin.ShowFacets.NEVER
    readonly_fields = ["schedule_words", "next_run_at", "last_run_at", "total_run_count",
                       "last_task_id", "last_result_link", "source", "date_changed"]

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return PeriodicTaskChangeList

    def get_fieldsets(self, request: HttpRequest, obj: PeriodicTask | None = None) -> Any:
        if obj is None:  # nothing has run yet: no "Runs", no schedule in words
            return [(title, {**options, "fields": [f for f in options["fields"]
                                                   if f != "schedule_words"]})
                    for title, options in _SECTIONS if title != "Runs"]
        sections = list(_SECTIONS)
        if obj.source == "settings":
            sections.insert(0, ("Synced from the settings",
                                {"fields": (), "description": SETTINGS_NOTICE,
                                 "classes": ("settings-notice",)}))
        return sections

    # -- columns --------------------------------------------------------------------------

    @admin.display(description="task", ordering="task")
    def task_name(self, obj: PeriodicTask) -> str:
        if obj.task in registry:
            return obj.task
        return format_html('{} <span class="errornote" style="padding: 0 4px">not registered'
                           '</span>', obj.task)

    @admin.display(description="schedule")
    def schedule_words(self, obj: PeriodicTask) -> str:
        try:
            return obj.schedule().describe()
        except ValueError as exc:  # ScheduleError, and anything a stored row can hold
            return format_html('<span class="errornote" style="padding: 0 4px">invalid: {}'
                               '</span>', str(exc))

    @admin.display(description="next run", ordering="next_run_at")
    def next_run(self, obj: PeriodicTask) -> str:
        if obj.next_run_at is None:
            return "waiting for the beat" if obj.enabled and obj.schedule_model else "-"
        return format_html("{}<br><small>{}</small>", moment(obj.next_run_at),
                           from_now(obj.next_run_at))

    @admin.display(description="last run", ordering="last_run_at")
    def last_run(self, obj: PeriodicTask) -> str:
        """The result of the last queued run, scheduled or run now, with its time."""
        result = last_result(obj)
        if result is None:
            if not obj.last_task_id:
                return moment(obj.last_run_at) if obj.last_run_at else "never"
            return format_html('{}<br><small>no result recorded</small>',
                               moment(obj.last_run_at))
        url = reverse("admin:django_tasks_taskresult_change", args=[result.pk])
        return format_html('<a class="last-result" href="{}">{}</a><br><small>{}</small>',
                           url, state_badge(result.state), moment(result.created_at))

    @admin.display(description="last result")
    def last_result_link(self, obj: PeriodicTask) -> str:
        if not obj.last_task_id:
            return "-"
        result = last_result(obj)
        if result is None:
            return format_html("{} (no result recorded)", obj.last_task_id)
        url = reverse("admin:django_tasks_taskresult_change", args=[result.pk])
        return format_html('<a href="{}">{}</a> queued {}', url, state_badge(result.state),
                           moment(result.created_at))

    # -- actions --------------------------------------------------------------------------

    def has_run_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("django_tasks.run_periodictask"))

    @admin.action(description="Enable the selected periodic tasks", permissions=["change"])
    def enable(self, request: HttpRequest, queryset: PeriodicTaskQuerySet) -> None:
        now, enabled, finished = clock.now(), [], []
        for row in queryset.filter(enabled=False).select_related(*KINDS):
            row.enabled = True
            try:
                next_run = row.first_run_after(now)
            except ValueError:  # the list shows the schedule invalid; the beat reports it
                next_run = None
            else:
                if next_run is None:  # a clocked time that has run: the beat would disable it
                    finished.append(row.name)
                    continue
            # update() with next_run_at given: only these columns, and stamped as an edit.
            PeriodicTask.objects.filter(pk=row.pk).update(enabled=True, next_run_at=next_run)
            enabled.append(row.name)
        self.message_user(request, f"Enabled {len(enabled)} periodic task(s)"
                          + (f": {', '.join(enabled)}." if enabled else "."), messages.SUCCESS)
        if finished:
            self.message_user(request, f"Left disabled, with nothing left to run (a clocked "
                              f"time that has run): {', '.join(finished)}. Choose a new time "
                              "or another schedule first.", messages.WARNING)

    @admin.action(description="Disable the selected periodic tasks", permissions=["change"])
    def disable(self, request: HttpRequest, queryset: PeriodicTaskQuerySet) -> None:
        count = queryset.filter(enabled=True).update(enabled=False)  # clears next_run_at
        self.message_user(request, f"Disabled {count} periodic task(s).", messages.SUCCESS)

    @admin.action(description="Run the selected periodic tasks now", permissions=["run"])
    def run_now(self, request: HttpRequest, queryset: PeriodicTaskQuerySet) -> None:
        rows = list(queryset.select_related(*KINDS)[: self.run_now_limit + 1])
        if len(rows) > self.run_now_limit:
            self.message_user(request, f"More than {self.run_now_limit} periodic tasks "
                              f"selected; run at most {self.run_now_limit} at a time.",
                              messages.ERROR)
            return
        now = clock.now()
        planned: list[tuple[PeriodicTask, Message]] = []
        for row in rows:
            try:
                planned.append((row, run_message(row, now)))
            except EntryError as exc:
                self.message_user(request, f"Not run: {exc}.", messages.ERROR)
        if not planned:
            return
        try:
            with transaction.atomic():
                publish_many([message for _, message in planned])
                for row, message in planned:
                    record_last_task(row, message.id)
        except TaskError as exc:  # the broker refused or could not be reached
            self.message_user(request, f"Nothing was queued: {exc}", messages.ERROR)
            return
        self.message_user(request, queued_message(planned), messages.SUCCESS)


def run_message(row: PeriodicTask, now: dt.datetime) -> Message:
    """The message of a run now: the beat's message for a run due ``now``."""
    if row.expires is not None and row.expires <= now:
        raise EntryError(f"periodic task {row.name!r} expired at {moment(row.expires)}; "
                         "clear or move its expiry to run it")
    return message_for(row, due=now, now=now)


def record_last_task(row: PeriodicTask, task_id: str) -> None:
    """Set ``last_task_id`` only: a manual run is not an edit of the schedule."""
    PeriodicTask.objects.filter(pk=row.pk).record(last_task_id=task_id)


def result_search_url(task_id: str) -> str:
    """The result list searched for one task id (through its unique index)."""
    return f"{reverse('admin:django_tasks_taskresult_changelist')}?{urlencode({'q': task_id})}"


def queued_message(planned: list[tuple[PeriodicTask, Message]]) -> str:
    links = format_html_join("; ", '{} → <a href="{}">{}</a>',
                             ((row.name, result_search_url(m.id), m.id) for row, m in planned))
    return format_html("Queued {} run(s) now: {}. The schedule is unchanged.",
                       len(planned), links)


@admin.register(BeatSlot)
class BeatSlotAdmin(ReadOnlyAdmin):
    """The runs the beat queued lately (kept an hour), each linked to its result."""

    actions = None
    list_display = ["periodic_task", "due_at", "task", "queued_at", "beat"]
    list_select_related = ["periodic_task"]
    search_fields = ["task_id"]
    search_help_text = "An exact task id."
    ordering = ["-queued_at"]
    sortable_by = ["due_at", "queued_at"]

    def get_search_results(self, request: HttpRequest, queryset: QuerySet[Any],
                           search_term: str) -> tuple[QuerySet[Any], bool]:
        term = search_term.strip()
        return (queryset.filter(task_id=term) if term else queryset), False

    @admin.display(description="task id")
    def task(self, obj: BeatSlot) -> str:
        return format_html('<a href="{}">{}</a>', result_search_url(obj.task_id), obj.task_id)
