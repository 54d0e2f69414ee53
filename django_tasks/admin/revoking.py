"""Revoke and terminate: the result list's actions, and the buttons on a result's page.

Both ask first, on a page that says what will happen to each task; both need the
``django_tasks.revoke_taskresult`` permission. A revoke is stored in the result store
(``AsyncResult.revoke()``), so a queued task never runs, whichever worker fetches it and
whenever; terminate also asks the workers, through the control channel, to stop those
running now.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse

from ..models import TaskResult
from ..states import PENDING, READY_STATES, RETRY

#: How many tasks one confirmation may revoke ("select all" of a filtered list).
REVOKE_LIMIT = 1000
#: The field of the result page's buttons: come back to the result's page afterwards.
RETURN_FIELD = "_return_to_result"
#: The result page's buttons: the action and what it is called there.
BUTTONS = (("revoke_tasks", "Revoke"), ("terminate_tasks", "Terminate"))


def is_running(state: str) -> bool:
    """STARTED, or a state the task set itself: a worker holds it now."""
    return state not in READY_STATES and state not in (PENDING, RETRY)


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def fate(row: TaskResult, terminate: bool) -> str:
    """What the action will do to one task, as the confirmation page says it."""
    if row.state in READY_STATES:
        return f"already finished ({row.state}): skipped"
    if not is_running(row.state):
        return "revoked: it never runs"
    if terminate:
        return "revoked, and stopped where it runs"
    return "revoked, but left to finish its run (its outcome is not stored)"


def revoke_action(model_admin: admin.ModelAdmin[Any], request: HttpRequest,
                  queryset: QuerySet[TaskResult], *, terminate: bool) -> HttpResponse | None:
    """The confirmation page on the first POST; the revokes on the confirming one."""
    # The confirmation shows these columns only: the big text ones stay unread.
    rows = list(queryset.order_by("created_at")
                .only("pk", "task_id", "task_name", "state", "created_at")[: REVOKE_LIMIT + 1])
    if len(rows) > REVOKE_LIMIT:
        model_admin.message_user(
            request, f"More than {REVOKE_LIMIT} tasks selected; revoke at most "
            f"{REVOKE_LIMIT} at a time (filter the list first).", messages.ERROR)
        return None
    if request.POST.get("post") != "yes":
        return _confirmation(model_admin, request, rows, terminate)
    revoked, skipped = _revoke(rows)
    if terminate:
        _report_terminated(model_admin, request, revoked)
    else:
        running = sum(is_running(state) for _, state in revoked)
        text = f"{plural(len(revoked), 'task')} revoked."
        if running:
            text += (f" {plural(running, 'running task')} left to finish "
                     f"({'its' if running == 1 else 'their'} outcome is not stored; "
                     "terminate stops a running task).")
        if revoked:
            model_admin.message_user(request, text, messages.SUCCESS)
    if skipped:
        model_admin.message_user(
            request, f"Skipped {plural(len(skipped), 'task')} that had already finished "
            f"(SUCCESS, FAILURE or REVOKED): {_ids(skipped)}.", messages.WARNING)
    return _back(request, rows)


def _revoke(rows: Sequence[TaskResult]) -> tuple[list[tuple[str, str]], list[str]]:
    """Store the revokes: the (id, state as read) of those revoked, the ids of those that
    had finished (by the time of the revoke: the store decides, not the page)."""
    from ..result import AsyncResult

    revoked, skipped = [], []
    for row in rows:
        if row.state not in READY_STATES and AsyncResult(row.task_id).revoke():
            revoked.append((row.task_id, row.state))
        else:
            skipped.append(row.task_id)
    return revoked, skipped


def _report_terminated(model_admin: admin.ModelAdmin[Any], request: HttpRequest,
                       revoked: list[tuple[str, str]]) -> None:
    """Ask the workers to stop the revoked tasks and say what they stopped."""
    from ..control.channel import DEFAULT_TIMEOUT, broadcast, online_workers

    if not revoked:
        return
    running = [task_id for task_id, state in revoked if is_running(state)]
    terminated: set[str] = set()
    workers = online_workers()
    if workers:
        # Every revoked id, not only those read as running: one may have started since.
        replies = broadcast("revoke", {"task_ids": [task_id for task_id, _ in revoked],
                                       "terminate": True, "signal": "SIGTERM"},
                            timeout=DEFAULT_TIMEOUT)
        for reply in replies:
            ok = reply.body.get("ok")
            if isinstance(ok, dict):
                terminated.update(str(i) for i in ok.get("terminated") or ())
    text = (f"{plural(len(revoked), 'task')} revoked; "
            f"{plural(len(terminated), 'running task')} terminated.")
    model_admin.message_user(request, text, messages.SUCCESS)
    missed = [task_id for task_id in running if task_id not in terminated]
    if missed:
        where = (f"on the {plural(len(workers), 'worker')} online" if workers
                 else "on any worker: no worker is online")
        one = len(missed) == 1
        model_admin.message_user(
            request, f"{plural(len(missed), 'task')} shown as running {'was' if one else 'were'}"
            f" not found running {where} ({_ids(missed)}); "
            f"{'it is' if one else 'they are'} REVOKED and never run again.", messages.WARNING)


def _ids(task_ids: Sequence[str]) -> str:
    shown = ", ".join(task_ids[:5])
    return shown + (f" and {len(task_ids) - 5} more" if len(task_ids) > 5 else "")


def _back(request: HttpRequest, rows: Sequence[TaskResult]) -> HttpResponse | None:
    """Back to the result's page when the action came from its buttons; else the list."""
    wanted = request.POST.get(RETURN_FIELD, "")
    for row in rows:
        if wanted and str(row.pk) == wanted:
            return HttpResponseRedirect(
                reverse("admin:django_tasks_taskresult_change", args=[row.pk]))
    return None


def _confirmation(model_admin: admin.ModelAdmin[Any], request: HttpRequest,
                  rows: Sequence[TaskResult], terminate: bool) -> HttpResponse:
    opts = model_admin.model._meta
    action = "terminate_tasks" if terminate else "revoke_tasks"
    unfinished = [row for row in rows if row.state not in READY_STATES]
    context = {
        **model_admin.admin_site.each_context(request),
        "title": "Terminate tasks?" if terminate else "Revoke tasks?",
        "opts": opts, "app_label": opts.app_label, "action": action,
        "terminate": terminate, "rows": [(row, fate(row, terminate)) for row in rows],
        "unfinished": len(unfinished),
        "running": sum(is_running(row.state) for row in unfinished),
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "return_to": request.POST.get(RETURN_FIELD, ""),
        "return_field": RETURN_FIELD, "media": model_admin.media,
    }
    request.current_app = model_admin.admin_site.name
    return TemplateResponse(request, "admin/django_tasks/revoke_confirmation.html", context)
