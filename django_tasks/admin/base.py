"""What the admin pages of django_tasks share: read-only permissions, cheap paging, display."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.functional import cached_property
from django.utils.html import format_html


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
