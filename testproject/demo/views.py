"""The demo page: enqueue example tasks and watch their results arrive."""

import json

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from django_tasks import AsyncResult
from django_tasks.models import TaskResult

from . import tasks


@require_http_methods(["GET", "POST"])
def index(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        kind = request.POST.get("kind", "add")
        if kind == "add":
            tasks.add.delay(int(request.POST.get("x", 2)), int(request.POST.get("y", 3)))
        elif kind == "email":
            tasks.send_welcome_email.delay("ada@example.com", "Ada")
        elif kind == "slow":
            tasks.slow.delay(5)
        elif kind == "fail":
            tasks.fail.delay()
        return redirect("demo-index")
    recent = list(TaskResult.objects.order_by("-created_at")[:20])
    for row in recent:
        row.shown = shown_result(row.result)  # type: ignore[attr-defined]
    return render(request, "demo/index.html", {"results": recent})


def shown_result(text: str | None) -> str:
    """A result as a reader wants it: a failure's type and message, not its stored JSON."""
    if not text:
        return ""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    if isinstance(value, dict) and "exc_type" in value:
        message = str(value.get("exc_message") or "")
        return f"{value['exc_type']}: {message}" if message else str(value["exc_type"])
    return text


def result(request: HttpRequest, task_id: str) -> JsonResponse:
    res = AsyncResult(task_id)
    value = res.result
    return JsonResponse({"id": res.id, "state": res.state,
                         "result": value if res.successful() else repr(value)})
