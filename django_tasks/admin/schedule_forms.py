"""The forms of periodic tasks and schedules, and the schedule models' admins.

Each refusal says what was wrong and what to write instead; a name that is nearly right
(a task name, a time zone) is answered with the close matches, as difflib finds them. The
schedule forms validate through the schedule objects (the models' ``clean()`` builds one),
so the admin refuses exactly what the beat could not use. The schedule admins open in the
popups of the periodic task form (its + and pencil icons) as well as on their own.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any
from zoneinfo import available_timezones

from django import forms
from django.conf import settings
from django.contrib import admin
from django.contrib.admin.widgets import AdminTextInputWidget
from django.core.exceptions import ValidationError
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.utils import formats, timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from .. import clock, serialization
from ..exceptions import EncodeError
from ..message import name_error
from ..models import ClockedSchedule, CrontabSchedule, IntervalSchedule, PeriodicTask
from ..registry import registry
from ..schedules import ScheduleError, crontab
from ..schedules.zones import zone_key

_JSON_TYPES = {dict: "an object", list: "a list", str: "a string", bool: "true or false",
               int: "a number", float: "a number", type(None): "null"}


class DatalistInput(AdminTextInputWidget):
    """A text input that offers ``options()`` (an HTML datalist) and accepts any text.

    The options are read when the form is drawn, not when this module is imported."""

    def __init__(self, options: Callable[[], Iterable[str]],
                 attrs: dict[str, Any] | None = None) -> None:
        super().__init__(attrs)
        self.options = options

    def render(self, name: str, value: Any, attrs: dict[str, Any] | None = None,
               renderer: Any = None) -> SafeString:
        list_id = f"{(attrs or {}).get('id') or f'id_{name}'}_options"
        field = super().render(name, value, {**(attrs or {}), "list": list_id}, renderer)
        options = format_html_join("", '<option value="{}">', ((o,) for o in self.options()))
        return format_html('{}<datalist id="{}">{}</datalist>', field, list_id, options)


def close_matches(word: str, known: Iterable[str], limit: int = 3) -> list[str]:
    """The known names closest to ``word``, compared by their last part first (so that
    ``add`` finds ``app.tasks.add`` and ``prague`` finds ``Europe/Prague``), whole when no
    last part is close; the closest whole name first."""
    names = list(known)
    by_tail: dict[str, list[str]] = {}
    for name in names:
        by_tail.setdefault(_tail(name).lower(), []).append(name)
    tails = difflib.get_close_matches(_tail(word).lower(), list(by_tail), n=limit, cutoff=0.75)
    found = [name for tail in tails for name in by_tail[tail]]
    if not found:
        found = difflib.get_close_matches(word, names, n=limit, cutoff=0.6)

    def likeness(name: str) -> float:
        return difflib.SequenceMatcher(None, word.lower(), name.lower()).ratio()

    return sorted(found, key=likeness, reverse=True)[:limit]


def _tail(name: str) -> str:
    return name.replace("/", ".").rsplit(".", 1)[-1]


def suggestion(matches: list[str]) -> str:
    return f" Did you mean {' or '.join(matches)}?" if matches else ""


def unregistered_task_error(name: str) -> str:
    matches = close_matches(name, registry)
    known = ("" if matches else " No registered task has a similar name; the known ones are "
             "offered as you type in this field.")
    return (f"{name!r} is not a registered task.{suggestion(matches)}{known} Tasks register "
            "with @shared_task in the tasks.py of an installed app.")


def parse_json(text: str, field: str, kind: type, example: str) -> Any:
    """``text`` as JSON of ``kind`` (list or dict), or a ValidationError saying what to write."""
    wanted = _JSON_TYPES[kind]
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ValidationError(f"{field} is not valid JSON ({exc}); write {wanted}, e.g. "
                              f"{example}.") from None
    if not isinstance(value, kind):
        raise ValidationError(f"{field} must be a JSON {wanted.split()[-1]}, not "
                              f"{_JSON_TYPES.get(type(value), 'that')}; e.g. {example}.")
    try:
        serialization.dumps(value, field)
    except EncodeError as exc:
        raise ValidationError(str(exc)) from None
    return value


class PeriodicTaskForm(forms.ModelForm):
    """Refuses what the beat could not queue: an unregistered task, arguments that are not
    JSON or do not fit the task, a queue name no broker takes. The model's ``clean()``
    checks that exactly one schedule is chosen."""

    class Meta:
        model = PeriodicTask
        fields = ["name", "task", "enabled", "description", "interval", "crontab", "clocked",
                  "start_time", "one_off", "args", "kwargs", "queue", "priority", "expires",
                  "expire_seconds"]
        widgets = {
            "task": DatalistInput(lambda: registry),
            "description": forms.Textarea(attrs={"rows": 2, "cols": 60,
                                                 "class": "vLargeTextField"}),
            "args": forms.Textarea(attrs={"rows": 2, "cols": 60, "class": "vLargeTextField"}),
            "kwargs": forms.Textarea(attrs={"rows": 2, "cols": 60,
                                            "class": "vLargeTextField"}),
        }

    def clean_task(self) -> str:
        name = str(self.cleaned_data["task"]).strip()
        if name not in registry:
            raise ValidationError(unregistered_task_error(name))
        return name

    def clean_args(self) -> str:
        text = str(self.cleaned_data.get("args") or "").strip() or "[]"
        parse_json(text, "args", list, "[16, 16]")
        return text

    def clean_kwargs(self) -> str:
        text = str(self.cleaned_data.get("kwargs") or "").strip() or "{}"
        parse_json(text, "kwargs", dict, '{"user_id": 5}')
        return text

    def clean_queue(self) -> str | None:
        queue = str(self.cleaned_data.get("queue") or "").strip()
        if queue and (problem := name_error(queue, "the queue name")):
            raise ValidationError(problem)
        return queue or None

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        if {"task", "args", "kwargs"} <= cleaned.keys():
            args, kwargs = json.loads(cleaned["args"]), json.loads(cleaned["kwargs"])
            try:
                registry.get(cleaned["task"]).check_arguments(tuple(args), kwargs)
            except TypeError as exc:
                self.add_error("args", f"The arguments do not fit the task: {exc}.")
        return cleaned


@lru_cache(maxsize=1)
def time_zones() -> tuple[str, ...]:
    return tuple(sorted(available_timezones()))


class CrontabScheduleForm(forms.ModelForm):
    """The time zone is checked here, with suggestions; the cron fields by the model's
    ``clean()``, through the schedule object, under the field each error names."""

    class Meta:
        model = CrontabSchedule
        fields = ["minute", "hour", "day_of_week", "day_of_month", "month_of_year", "timezone"]
        widgets = {"timezone": DatalistInput(time_zones)}

    def clean_timezone(self) -> str:
        name = str(self.cleaned_data.get("timezone") or "").strip()
        try:
            zone_key(name or None, "timezone")
        except ScheduleError:
            matches = close_matches(name, time_zones())
            raise ValidationError(
                f"Unknown time zone {name!r}.{suggestion(matches)} Write an IANA name such "
                f"as Europe/Prague or America/New_York, or leave it blank for the project's "
                f"TIME_ZONE ({settings.TIME_ZONE}).") from None
        return name


def moment(value: dt.datetime | None) -> str:
    """A time to the second, in the project's zone (runs a minute apart must differ)."""
    return "-" if value is None else formats.date_format(timezone.localtime(value),
                                                         "Y-m-d H:i:s T")


# -- the schedule admins ------------------------------------------------------------------


class _ScheduleAdmin(admin.ModelAdmin):
    """What the three schedule admins share: the schedule in words, and what uses it."""

    show_facets = admin.ShowFacets.NEVER

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return super().get_queryset(request).annotate(used=Count("periodictask"))

    @admin.display(description="in words")
    def words(self, obj: Any) -> str:
        return str(obj) if obj.pk else "-"

    @admin.display(description="periodic tasks", ordering="used")
    def used_by(self, obj: Any) -> int:
        return int(getattr(obj, "used", 0))

    @admin.display(description="used by")
    def tasks_using(self, obj: Any) -> str:
        shown = 20
        names = list(PeriodicTask.objects.filter(**{obj.periodic_field: obj.pk})
                     .values_list("name", flat=True)[:shown + 1]) if obj.pk else []
        if not names:
            return "-"
        return format_html("{}{} <small>(a change here changes each of them)</small>",
                           ", ".join(names[:shown]), ", …" if len(names) > shown else "")


@admin.register(IntervalSchedule)
class IntervalScheduleAdmin(_ScheduleAdmin):
    list_display = ["words", "every", "period", "used_by"]
    fields = ["every", "period", "words", "tasks_using"]
    readonly_fields = ["words", "tasks_using"]


@admin.register(CrontabSchedule)
class CrontabScheduleAdmin(_ScheduleAdmin):
    form = CrontabScheduleForm
    list_display = ["words", "minute", "hour", "day_of_week", "day_of_month", "month_of_year",
                    "timezone", "used_by"]
    fieldsets = [(None, {
        "fields": ["minute", "hour", "day_of_week", "day_of_month", "month_of_year",
                   "timezone", "words", "upcoming", "tasks_using"],
        "description": "Cron's fields, as Celery's crontab() takes them: a day matches when "
                       "it matches both day_of_month and day_of_week."})]
    readonly_fields = ["words", "upcoming", "tasks_using"]

    @admin.display(description="next times")
    def upcoming(self, obj: CrontabSchedule) -> str:
        if obj.pk is None:
            return "-"
        try:
            plan: crontab = obj.schedule()
            times, after = [], clock.now()
            for _ in range(3):
                after = plan.next_after(after)
                times.append((moment(after),))
        except ScheduleError:
            return "-"
        return format_html_join(", ", "{}", times)


@admin.register(ClockedSchedule)
class ClockedScheduleAdmin(_ScheduleAdmin):
    list_display = ["words", "clocked_time", "used_by"]
    fields = ["clocked_time", "words", "tasks_using"]
    readonly_fields = ["words", "tasks_using"]
