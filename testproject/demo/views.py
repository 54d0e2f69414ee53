"""The demo page: enqueue example tasks and watch their results arrive."""

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
    recent = TaskResult.objects.order_by("-created_at")[:20]
    return render(request, "demo/index.html", {"results": recent})


def result(request: HttpRequest, task_id: str) -> JsonResponse:
    res = AsyncResult(task_id)
    value = res.result
    return JsonResponse({"id": res.id, "state": res.state,
                         "result": value if res.successful() else repr(value)})
