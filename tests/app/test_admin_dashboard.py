"""The admin's dashboard page and its JSON endpoint, through Django's test client."""

from __future__ import annotations

import datetime as dt
import html
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

import django_tasks
from django_tasks import states
from django_tasks.models import TaskResult
from django_tasks.result import TaskOutcome
from django_tasks.results import stats
from django_tasks.results.database import DatabaseResultStore

from .factories import make_failure, make_worker, now

pytestmark = pytest.mark.django_db
DASHBOARD = reverse("admin:django_tasks_dashboard_changelist")
DATA = reverse("admin:django_tasks_dashboard_data")
STATIC = Path(django_tasks.__file__).parent / "static" / "django_tasks"


def count(*outcomes: TaskOutcome) -> None:
    DatabaseResultStore().count_outcomes(outcomes)


def run(task_id: str, name: str = "demo.add", state: str = states.SUCCESS,
        runtime: float = 0.2, ago: float = 0.0) -> TaskOutcome:
    done = now() - dt.timedelta(seconds=ago)
    return TaskOutcome(task_id=task_id, task_name=name, state=state, date_done=done,
                       started_at=done - dt.timedelta(seconds=runtime))


def staff(username: str, *perms: str) -> Client:
    user = User.objects.create_user(username, password="pw", is_staff=True)
    for codename in perms:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    client = Client()
    client.force_login(user)
    return client


def data(client: Client, window: str = "hour") -> dict:
    response = client.get(DATA, {"window": window})
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    return json.loads(response.content)


def test_the_dashboard_is_listed_and_draws_the_counters(admin_client: Client) -> None:
    count(*(run(f"ok-{i}") for i in range(5)), run("slow-one", runtime=7.5),
          run("gone", state=states.FAILURE))
    index = admin_client.get(reverse("admin:app_list", args=["django_tasks"]))
    assert DASHBOARD in index.content.decode()
    assert DASHBOARD in admin_client.get(reverse("admin:index")).content.decode()
    response = admin_client.get(DASHBOARD)
    assert response.status_code == 200
    text = html.unescape(response.content.decode())
    assert "Task dashboard" in text
    assert "django_tasks/uplot/uPlot.iife.min.js" in text
    assert "django_tasks/dashboard.js" in text
    assert f'data-data-url="{DATA}"' in text
    initial = json.loads(text.split('id="td-initial" type="application/json">')[1]
                         .split("</script>")[0])
    assert initial["totals"][states.SUCCESS] == 6
    assert initial["slowest"][0]["task_id"] == "slow-one"


def test_the_data_endpoint(admin_client: Client) -> None:
    make_failure("f-1")
    make_worker("w1@host")
    count(*(run(f"ok-{i}", runtime=0.01 * (i + 1)) for i in range(100)),
          run("f-1", name="demo.fail", state=states.FAILURE),
          run("f-0", name="demo.fail", state=states.FAILURE, ago=120),
          run("r-1", state=states.RETRY), run("old", ago=3 * 3600))
    hour = data(admin_client)
    assert hour["window"] == "hour" and hour["counted"]
    assert len(hour["hour"]["t"]) == 60 and len(hour["day"]["t"]) == 1440
    assert sum(hour["hour"]["series"]["SUCCESS"]) == 100
    assert sum(hour["day"]["series"]["SUCCESS"]) == 101
    assert hour["totals"] == {"SUCCESS": 100, "FAILURE": 2, "RETRY": 1, "REVOKED": 0}
    assert hour["failure_rate"] == pytest.approx(2 / 102, abs=1e-4)
    add = next(row for row in hour["tasks"] if row["task_name"] == "demo.add")
    assert add["total"] == 101 and add["retry"] == 1
    assert 0.4096 <= add["p50"] <= 0.8192  # the true median is 0.5 s
    assert 0.5 <= add["p99"] <= 1.0 and add["max"] == pytest.approx(1.0)
    failure = hour["failures"][0]
    assert failure["task_name"] == "demo.fail" and failure["failures"] == 2
    assert failure["last_task_id"] == "f-1"
    assert failure["last_error"] == "ValueError: boom <3"
    assert hour["slowest"][0]["runtime"] == pytest.approx(1.0)
    assert hour["workers_online"] == 1 and hour["workers"][0]["alive"]
    assert "default" in hour["queues"]["depths"]
    assert hour["queues"]["counts"]["default"] == {"ready": 0, "delayed": 0, "in_flight": 0,
                                                   "outbox": None, "consumers": 1}
    day = data(admin_client, "day")
    assert day["totals"]["SUCCESS"] == 101
    add = next(row for row in day["tasks"] if row["task_name"] == "demo.add")
    assert add["total"] == 102 and add["success"] == 101  # hour rows and minute rows
    assert day["failures"][0]["last_task_id"] == "f-1"
    assert data(admin_client, "nonsense")["window"] == "hour"


#: The admin's own pages (``PageAdmin``), each with the URLs it answers: one permission rule.
PAGES = {"dashboard": (DASHBOARD, DATA),
         "queues": (reverse("admin:django_tasks_queues_changelist"),)}
pages = pytest.mark.parametrize("urls", PAGES.values(), ids=PAGES.keys())


@pages
def test_anonymous_users_are_sent_to_the_login(client: Client, urls: tuple[str, ...]) -> None:
    for url in urls:
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))


@pages
def test_staff_without_the_view_permission_on_results_are_refused(urls: tuple[str, ...]) -> None:
    client = staff("clerk", "view_workerstate", "view_queuedmessage")
    for url in urls:
        assert client.get(url).status_code == 403
    index = client.get(reverse("admin:index")).content.decode()
    assert urls[0] not in index


@pages
def test_staff_with_the_view_permission_on_results_see_it(urls: tuple[str, ...]) -> None:
    client = staff("operator", "view_taskresult")
    for url in urls:
        assert client.get(url).status_code == 200
    assert urls[0] in client.get(reverse("admin:index")).content.decode()


@pages
def test_non_staff_users_are_refused_even_with_the_permission(urls: tuple[str, ...]) -> None:
    user = User.objects.create_user("customer", password="pw")
    user.user_permissions.add(Permission.objects.get(codename="view_taskresult"))
    client = Client()
    client.force_login(user)
    for url in urls:
        assert client.get(url).status_code == 302


def _fill(results: int) -> None:
    names = [f"demo.task{i}" for i in range(5)]
    rows = [TaskResult(task_id=f"t-{i}", task_name=names[i % 5],
                       state=states.FAILURE if i % 7 == 0 else states.SUCCESS,
                       created_at=now(), date_done=now(), result='{"exc_type": "E"}')
            for i in range(results)]
    TaskResult.objects.bulk_create(rows, batch_size=500)
    count(*(run(r.task_id, r.task_name, r.state, ago=(i % 90) * 60)
            for i, r in enumerate(rows)))


def _queries(client: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


def test_the_number_of_queries_does_not_grow_with_the_rows(admin_client: Client) -> None:
    _fill(10)
    few = {url: _queries(admin_client, url) for url in (DASHBOARD, DATA, DATA + "?window=day")}
    TaskResult.objects.all().delete()
    _fill(1000)
    many = {url: _queries(admin_client, url) for url in (DASHBOARD, DATA, DATA + "?window=day")}
    assert many == few
    assert min(many.values()) >= 5 and max(many.values()) <= 12, many


def test_the_chart_library_is_served_with_its_licence() -> None:
    assert (STATIC / "uplot" / "uPlot.iife.min.js").stat().st_size > 10_000
    assert (STATIC / "uplot" / "uPlot.min.css").exists()
    assert "MIT License" in (STATIC / "uplot" / "LICENSE").read_text()
    script = (STATIC / "dashboard.js").read_text()
    assert "http://" not in script and "https://" not in script  # nothing from the internet


@pytest.fixture(autouse=True)
def _fresh_chart() -> Iterator[None]:
    stats.forget_cached()
    yield
    stats.forget_cached()


def test_settled_minutes_are_kept_between_refreshes(admin_client: Client) -> None:
    count(run("old", ago=600))
    assert sum(data(admin_client)["hour"]["series"]["SUCCESS"]) == 1
    # A minute ten minutes ago has settled: the next refresh reads only the recent ones...
    count(run("late", ago=600), run("new"))
    assert sum(data(admin_client)["hour"]["series"]["SUCCESS"]) == 2
    # ...until everything is read again, once a minute.
    stats.forget_cached()
    assert sum(data(admin_client)["hour"]["series"]["SUCCESS"]) == 3
