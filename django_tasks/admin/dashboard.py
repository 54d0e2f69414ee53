"""The dashboard: charts of the per-minute counters, queue depths and workers, refreshed by
the page itself every few seconds from a JSON endpoint.

Listed in the admin as *Dashboard* beside the other pages of django_tasks (a proxy model,
``models.Dashboard``). Staff with the view permission on task results (or superusers) see
it; nobody else does. Its data is ``results.stats.snapshot()``: a fixed handful of queries
on the counters, whatever the number of result rows.
"""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from ..models import Dashboard
from ..results import stats
from .base import PageAdmin

#: How often the page asks for new data, in seconds.
REFRESH_SECONDS = 5


@admin.register(Dashboard)
class DashboardAdmin(PageAdmin):
    def get_urls(self) -> list[URLPattern]:
        info = self.opts.app_label, self.opts.model_name
        return [
            path("", self.admin_site.admin_view(self.dashboard_view),
                 name="{}_{}_changelist".format(*info)),
            path("data/", self.admin_site.admin_view(self.data_view),
                 name="{}_{}_data".format(*info)),
        ]

    def dashboard_view(self, request: HttpRequest) -> HttpResponse:
        self.check_viewer(request)
        window = request.GET.get("window", "hour")
        window = window if window in stats.WINDOWS else "hour"
        context = {
            **self.admin_site.each_context(request),
            "title": "Dashboard",
            "opts": self.opts,
            "window": window,
            "windows": list(stats.WINDOWS),
            "refresh_seconds": REFRESH_SECONDS,
            "data_url": reverse("admin:django_tasks_dashboard_data"),
            "results_url": reverse("admin:django_tasks_taskresult_changelist"),
            "queues_url": reverse("admin:django_tasks_queues_changelist"),
            "initial": stats.snapshot(window),
        }
        return TemplateResponse(request, "admin/django_tasks/dashboard.html", context)

    def data_view(self, request: HttpRequest) -> JsonResponse:
        self.check_viewer(request)
        response = JsonResponse(stats.snapshot(request.GET.get("window", "hour")))
        response["Cache-Control"] = "no-store"
        return response
