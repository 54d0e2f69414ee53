"""What the admin pages of django_tasks share: read-only permissions, cheap paging, display."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe


class AtLeast(int):
    """A count that stopped at its limit: compares as the number, prints as "10000+"."""

    def __str__(self) -> str:
        # With USE_THOUSAND_SEPARATOR the template groups the characters of str(): a "+"
        # would be grouped as a digit ("100,00+"), so it shows the plain number there.
        if settings.USE_THOUSAND_SEPARATOR:
            return str(int(self))
        return f"{int(self)}+"


class CappedCountPaginator(Paginator):
    """Counts at most ``limit`` rows.

    ``COUNT(*)`` over millions of rows costs seconds on every page; nobody pages that far,
    they filter. Past the limit the list says "10000+ task results".
    """

    limit = 10_000

    @cached_property
    def count(self) -> int:
        rows: Any = self.object_list  # a QuerySet in the admin
        counted = int(rows.order_by()[: self.limit + 1].count())
        return AtLeast(self.limit) if counted > self.limit else counted


class LightChangeList(ChangeList):
    """A change list that leaves the model admin's ``list_defer`` columns unread."""

    def get_queryset(self, request: HttpRequest, exclude_parameters: Any = None) -> QuerySet[Any]:
        queryset = super().get_queryset(request, exclude_parameters)
        deferred = getattr(self.model_admin, "list_defer", ())
        return queryset.defer(*deferred) if deferred else queryset


class ReadOnlyAdmin(admin.ModelAdmin):
    """No add, no change; deletion for superusers only where ``superuser_may_delete``."""

    superuser_may_delete = False
    paginator = CappedCountPaginator
    show_full_result_count = False  # a second COUNT(*) of the whole table on every page
    show_facets = admin.ShowFacets.NEVER  # one COUNT per filter choice
    list_per_page = 50

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.superuser_may_delete and bool(request.user.is_superuser)

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return LightChangeList


class PageAdmin(admin.ModelAdmin):
    """A page of its own in the admin (the dashboard, the queues), listed beside the others
    through a proxy model. Active staff with the view (or change) permission on task results
    see it, and superusers; nobody adds, changes or deletes anything through it."""

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        user = request.user
        return bool(user.is_active and user.is_staff and (
            user.has_perm("django_tasks.view_taskresult")
            or user.has_perm("django_tasks.change_taskresult")))

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def check_viewer(self, request: HttpRequest) -> None:
        """Refuse (403) a logged-in user who may not see this page."""
        if not self.has_view_permission(request):
            raise PermissionDenied


def envelope_task_name(body: str) -> str:
    """The task name in a message envelope, for the queue and outbox lists."""
    try:
        return str(json.loads(body)["headers"]["task"])
    except (ValueError, KeyError, TypeError):
        return "(undecodable)"


def envelope_shown(body: str) -> str:
    """A message envelope as the admin shows it: a sensitive task's arguments masked."""
    from ..masking import shown

    try:
        envelope = json.loads(body)
        task = str(envelope["headers"]["task"])
        args, kwargs = envelope["body"][0], envelope["body"][1]
    except (ValueError, KeyError, TypeError, IndexError):
        return body
    masked_args, masked_kwargs = shown(task, args, kwargs)
    if (masked_args, masked_kwargs) == (args, kwargs):
        return body
    envelope["body"] = [masked_args, masked_kwargs, *envelope["body"][2:]]
    return json.dumps(envelope)


def pretty_json(text: str | None) -> str:
    """JSON text indented for reading, in a <pre> block; other text as it is."""
    if not text:
        return "-"
    try:
        shown = json.dumps(json.loads(text), indent=2, ensure_ascii=False, sort_keys=True)
    except ValueError:
        shown = text
    return preformatted(shown)


def preformatted(text: str, css_class: str = "") -> str:
    """Text in an escaped <pre> block that wraps long lines."""
    return format_html(
        '<pre class="{}" style="white-space: pre-wrap; margin: 0; font-size: 12px">{}</pre>',
        css_class, text,
    )


#: Characters of a task id the lists show; the whole id is on hover and on the copy button.
SHORT_ID = 8


def short_id(task_id: str, url: str | None = None) -> str:
    """A task id shortened to its first characters (linked to ``url``), the whole id in its
    title, and a button that copies the whole id (``static/django_tasks/task-id.js``)."""
    short = task_id if len(task_id) <= SHORT_ID + 1 else f"{task_id[:SHORT_ID]}…"
    text = (format_html('<a href="{}" class="task-id" title="{}">{}</a>', url, task_id, short)
            if url else format_html('<span class="task-id" title="{}">{}</span>', task_id,
                                    short))
    return format_html(
        '<span class="task-id-wrap">{}<button type="button" class="task-id-copy" '
        'data-task-id="{}" title="Copy the whole id" aria-label="Copy the task id {}">'
        '{}</button></span>', text, task_id, task_id, COPY_ICON)


class ShortIds:
    """A list's first column as a short task id linked to the row's page, with the copy
    button (mixed into a ``ModelAdmin`` whose model has a ``task_id``; set its
    ``list_display_links = None``: the short id links to the page itself)."""

    class Media:
        css = {"all": ["django_tasks/admin-lists.css"]}
        js = ["django_tasks/task-id.js"]

    @admin.display(description="task id")
    def short_task_id(self, obj: Any) -> str:
        opts = obj._meta
        url = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
        return short_id(obj.task_id, url)


#: Two overlapping sheets, drawn inline: no icon font, no file to load.
COPY_ICON = mark_safe(
    '<svg width="11" height="11" viewBox="0 0 16 16" aria-hidden="true" fill="none" '
    'stroke="currentColor" stroke-width="1.6"><rect x="5" y="5" width="9" height="9" '
    'rx="1.5"/><path d="M11 3.5V3a1.5 1.5 0 0 0-1.5-1.5h-6A1.5 1.5 0 0 0 2 3v6.5A1.5 1.5 0 '
    '0 0 3.5 11H4"/></svg>')


def local_time(moment: dt.datetime | None) -> str:
    """A time to the second in the current time zone, ``2026-11-28 15:26:50``, that wraps
    between the date and the time when its column is narrow."""
    if moment is None:
        return "-"
    if timezone.is_aware(moment):
        moment = timezone.localtime(moment)
    return format_html('<span class="task-time">{}</span> <span class="task-time">{}</span>',
                       moment.strftime("%Y-%m-%d"), moment.strftime("%H:%M:%S"))


def breakable(name: str) -> str:
    """A dotted name (a task, a host) that may wrap after its dots and before an ``@``."""
    parts = re.split(r"(?<=\.)|(?=@)", name)
    return format_html_join(mark_safe("<wbr>"), "{}", ((part,) for part in parts if part))
