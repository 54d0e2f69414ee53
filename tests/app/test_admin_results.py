"""The task result admin, through Django's test client as a superuser."""

from __future__ import annotations

import datetime as dt
import html
import re
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from django_tasks import states
from django_tasks.admin.base import AtLeast, CappedCountPaginator
from django_tasks.admin.results import TaskResultAdmin
from django_tasks.models import TaskResult

from .factories import make_failure, make_result, make_worker, now

pytestmark = pytest.mark.django_db
LIST = reverse("admin:django_tasks_taskresult_changelist")


def page(client: Client, url: str, params: dict[str, str] | None = None) -> str:
    response = client.get(url, params or {})
    assert response.status_code == 200
    # <wbr> lets long names wrap at their dots; the text is the name.
    return html.unescape(response.content.decode()).replace("<wbr>", "")


def detail_url(row: TaskResult) -> str:
    return reverse("admin:django_tasks_taskresult_change", args=[row.pk])


def test_list_shows_id_name_state_queue_worker_runtime_and_dates(admin_client: Client) -> None:
    make_result("aaa", runtime=1.5, queue="mail", worker="w7@host")
    text = page(admin_client, LIST)
    for shown in ("aaa", "demo.add", "SUCCESS", "mail", "w7@host", "1.500"):
        assert shown in text
    assert "background: #1a7f37" in text  # the state is coloured
    assert "column-created" in text and "column-done" in text


def test_list_shows_a_dash_for_a_task_that_has_not_run(admin_client: Client) -> None:
    make_result("queued", states.PENDING, done_ago=None)
    text = page(admin_client, LIST)
    assert "PENDING" in text and '<td class="field-runtime_s">-</td>' in text


def test_filter_by_state(admin_client: Client) -> None:
    make_result("ok-1")
    make_failure("bad-1")
    text = page(admin_client, LIST, {"state__exact": states.FAILURE})
    assert "bad-1" in text and "ok-1" not in text


def test_filter_by_task_name_offers_registered_tasks(admin_client: Client) -> None:
    make_result("sum-1", task_name="testproject.demo.tasks.add")
    make_result("other-1", task_name="elsewhere.task")
    text = page(admin_client, LIST)
    assert "?task_name=testproject.demo.tasks.add" in text  # from the registry, no scan
    text = page(admin_client, LIST, {"task_name": "testproject.demo.tasks.add"})
    assert "sum-1" in text and "other-1" not in text


def test_filter_by_queue_offers_the_queues_workers_consume(admin_client: Client) -> None:
    make_worker("w1@host", queues="default,mail")
    make_result("in-mail", queue="mail")
    make_result("in-default")
    text = page(admin_client, LIST)
    assert "?queue=mail" in text and "?queue=default" in text
    text = page(admin_client, LIST, {"queue": "mail"})
    assert "in-mail" in text and "in-default" not in text
    # A queue nobody told the filter about still filters, and is offered while chosen.
    make_result("in-rare", queue="rare")
    text = page(admin_client, LIST, {"queue": "rare"})
    assert "in-rare" in text and "in-mail" not in text and "?queue=rare" in text


def test_filter_by_created_date(admin_client: Client) -> None:
    make_result("made-today")
    make_result("last-month", created_at=now() - dt.timedelta(days=40))
    text = page(admin_client, LIST)
    today = re.search(r'<a href="([^"]*created_at__gte[^"]*)"[^>]*>Today</a>', text)
    assert today is not None
    text = page(admin_client, LIST + today.group(1))
    assert "made-today" in text and "last-month" not in text


def test_search_by_exact_task_id(admin_client: Client) -> None:
    make_result("8f2c-1")
    make_result("8f2c-10")
    text = page(admin_client, LIST, {"q": "8f2c-1"})
    assert "8f2c-10" not in text and ">8f2c-1<" in text


def test_search_by_part_of_a_task_name(admin_client: Client) -> None:
    make_result("mail-1", task_name="shop.tasks.send_receipt")
    make_result("add-1")
    text = page(admin_client, LIST, {"q": "send_rec"})
    assert "mail-1" in text and "add-1" not in text


def test_detail_shows_arguments_result_and_traceback(admin_client: Client) -> None:
    row = make_failure("bad-2", args='[1, "two"]', kwargs='{"retry": false}')
    response = admin_client.get(detail_url(row))
    raw = response.content.decode()
    assert response.status_code == 200
    assert "ValueError: boom &lt;3" in raw  # escaped, so shown as written
    assert '<pre class="traceback"' in raw
    text = html.unescape(raw)
    assert 'raise ValueError("boom <3")' in text
    assert '"exc_type": "ValueError"' in text  # the result as indented JSON
    assert '[\n  1,\n  "two"\n]' in text and '"retry": false' in text
    assert "FAILURE" in text and "w1@host" in text


def test_detail_of_a_success_shows_its_value(admin_client: Client) -> None:
    row = make_result("ok-2", result='{"total": 3, "items": ["a"]}')
    text = page(admin_client, detail_url(row))
    assert '"items": [\n    "a"\n  ],\n  "total": 3' in text


def test_list_does_not_read_the_big_columns(admin_client: Client) -> None:
    make_failure("bad-3")
    with CaptureQueriesContext(connection) as queries:
        page(admin_client, LIST)
    selects = [q["sql"] for q in queries if "django_tasks_taskresult" in q["sql"]]
    assert selects and not any('"traceback"' in sql for sql in selects)


@pytest.mark.parametrize(("grouping", "shown"), [(False, "30+"), (True, "30")])
def test_count_stops_at_the_limit(admin_client: Client, settings: Any,
                                  monkeypatch: pytest.MonkeyPatch, grouping: bool,
                                  shown: str) -> None:
    settings.USE_THOUSAND_SEPARATOR = grouping
    monkeypatch.setattr(CappedCountPaginator, "limit", 30)
    monkeypatch.setattr(TaskResultAdmin, "list_per_page", 10)
    now = dt.datetime.now(dt.UTC)
    TaskResult.objects.bulk_create(TaskResult(task_id=f"r{i}", task_name="demo.add",
                                              created_at=now) for i in range(31))
    text = page(admin_client, LIST)
    assert f"\n{shown} task results" in text
    assert "?p=3" in text and "?p=4" not in text  # pages up to the limit
    TaskResult.objects.filter(task_id="r0").delete()
    assert "\n30 task results" in page(admin_client, LIST)


def test_a_capped_count_prints_with_a_plus() -> None:
    assert CappedCountPaginator.limit == 10_000
    assert str(AtLeast(10_000)) == "10000+" and AtLeast(10_000) == 10_000


def test_nothing_can_be_added_or_changed(admin_client: Client) -> None:
    row = make_result("x")
    text = page(admin_client, LIST)
    assert reverse("admin:django_tasks_taskresult_add") not in text
    actions = re.findall(r'<option value="(\w+)"', text.split('name="action"')[1][:2000])
    assert actions == ["revoke_tasks", "terminate_tasks", "queue_again"]  # no bulk delete
    assert admin_client.get(reverse("admin:django_tasks_taskresult_add")).status_code == 403
    response = admin_client.post(detail_url(row), {"state": states.FAILURE})
    assert response.status_code == 403
    row.refresh_from_db()
    assert row.state == states.SUCCESS
    assert 'type="submit"' not in page(admin_client, detail_url(row)).split("<form")[-1]


def test_a_superuser_may_delete_a_result(admin_client: Client) -> None:
    row = make_result("gone")
    delete = reverse("admin:django_tasks_taskresult_delete", args=[row.pk])
    assert delete in page(admin_client, detail_url(row))
    assert admin_client.post(delete, {"post": "yes"}).status_code == 302
    assert not TaskResult.objects.filter(pk=row.pk).exists()


def test_staff_with_view_permission_can_only_look(client: Client) -> None:
    user = User.objects.create_user("ops", password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(
        codename__in=["view_taskresult", "delete_taskresult"]))
    client.force_login(user)
    row = make_failure("seen")
    assert "seen" in page(client, LIST)
    assert "ValueError: boom" in page(client, detail_url(row))
    delete = reverse("admin:django_tasks_taskresult_delete", args=[row.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 403
    assert TaskResult.objects.filter(pk=row.pk).exists()


def test_staff_without_permission_sees_nothing(client: Client) -> None:
    client.force_login(User.objects.create_user("intern", password="pw", is_staff=True))
    assert client.get(LIST).status_code == 403


# -- queue again ------------------------------------------------------------------------------


def queue_again(client: Client, *rows: TaskResult) -> str:
    response = client.post(LIST, {"action": "queue_again",
                                  "_selected_action": [row.pk for row in rows]}, follow=True)
    assert response.status_code == 200
    return html.unescape(response.content.decode())


def test_queue_again_sends_a_finished_task_anew_under_a_new_id(admin_client: Client) -> None:
    from django_tasks.message import Message
    from django_tasks.models import QueuedMessage

    failed = make_failure("bad-1", args='[5, "x"]', kwargs='{"k": 1}', queue="mail",
                          priority=4)
    text = queue_again(admin_client, failed)
    queued = QueuedMessage.objects.get()
    message = Message.decode(queued.body)
    assert (message.task, message.args, message.kwargs, message.queue, message.priority) == (
        "demo.fail", (5, "x"), {"k": 1}, "mail", 4)
    assert message.headers == {"rerun_of": "bad-1"}
    assert f"Queued 1 task(s) again: bad-1 → {message.id}." in text
    assert TaskResult.objects.get(task_id=message.id).state == states.PENDING
    assert TaskResult.objects.get(task_id="bad-1").state == states.FAILURE  # history kept


def test_queue_again_skips_unfinished_tasks(admin_client: Client) -> None:
    from django_tasks.models import QueuedMessage

    text = queue_again(admin_client, make_result("running", states.STARTED, done_ago=None),
                       make_result("done"))
    assert "Queued 1 task(s) again: done → " in text
    assert "Skipped 1 task(s) that have not finished" in text
    assert QueuedMessage.objects.count() == 1


def test_queue_again_refuses_too_many_at_once(admin_client: Client,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from django_tasks.models import QueuedMessage

    monkeypatch.setattr(TaskResultAdmin, "rerun_limit", 2)
    text = queue_again(admin_client, *(make_result(f"r{i}") for i in range(3)))
    assert "More than 2 tasks selected; queue at most 2 at a time" in text
    assert not QueuedMessage.objects.exists()


def test_queue_again_needs_its_own_permission(client: Client) -> None:
    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_taskresult"))
    client.force_login(viewer)
    make_result("done")
    assert "queue_again" not in page(client, LIST)
    viewer.user_permissions.add(Permission.objects.get(codename="rerun_taskresult"))
    viewer = User.objects.get(pk=viewer.pk)  # permissions are cached on the instance
    client.force_login(viewer)
    assert 'value="queue_again"' in page(client, LIST)
    assert "delete_selected" not in page(client, LIST)


# -- a task's own states and its progress ------------------------------------------------


def test_a_running_task_shows_its_progress_in_the_list_and_on_its_page(
        admin_client: Client) -> None:
    row = make_result("busy", "PROGRESS", done_ago=None,
                      result='{"current": 3, "total": 10, "step": "<b>"}')
    make_result("plain", states.STARTED, done_ago=None, result='{"step": 2}')
    make_result("over", "PROGRESS", done_ago=None, result='{"current": 12, "total": 10}')
    with CaptureQueriesContext(connection) as queries:
        text = page(admin_client, LIST)
    assert "PROGRESS" in text and "background: #8250df" in text  # a state of its own
    assert 'title="3 of 10"' in text and "width: 30.0%" in text and ">30%<" in text
    assert "width: 100.0%" in text  # past its total: full, never wider
    assert text.count('class="task-progress"') == 2
    selects = [q["sql"] for q in queries if "django_tasks_taskresult" in q["sql"]]
    column = connection.ops.quote_name("result")  # "result", or `result` on MySQL
    assert sum(column in sql for sql in selects) == 1  # one read for the page's meta
    detail = page(admin_client, detail_url(row))
    assert 'title="3 of 10"' in detail and "PROGRESS" in detail


def test_a_finished_task_shows_no_progress_bar(admin_client: Client) -> None:
    make_result("done", result='{"current": 3, "total": 10}')
    text = page(admin_client, LIST)
    assert 'class="task-progress"' not in text and "SUCCESS" in text


# -- readable on a 1280-pixel screen -----------------------------------------------------


def test_the_list_shows_short_ids_with_the_whole_id_to_hover_and_copy(
        admin_client: Client) -> None:
    row = make_result("0f5dbcfc-9a4e-4a44-b1a1-4d5e8f3c2b10", task_name="shop.tasks.receipt",
                      worker="w1@ip-10-0-3-17.internal")
    text = page(admin_client, LIST)
    assert (f'<a href="{detail_url(row)}" class="task-id" '
            'title="0f5dbcfc-9a4e-4a44-b1a1-4d5e8f3c2b10">0f5dbcfc…</a>') in text
    assert 'data-task-id="0f5dbcfc-9a4e-4a44-b1a1-4d5e8f3c2b10"' in text
    assert "django_tasks/task-id.js" in text and "django_tasks/admin-lists.css" in text
    raw = admin_client.get(LIST).content.decode()
    assert "shop.<wbr>tasks.<wbr>receipt" in raw and "w1<wbr>@ip-10-<wbr>" not in raw


def test_times_are_shown_to_the_second(admin_client: Client) -> None:
    row = make_result("timed", created_at=dt.datetime(2026, 3, 4, 5, 6, 7, tzinfo=dt.UTC),
                      date_done=dt.datetime(2026, 3, 4, 5, 6, 9, tzinfo=dt.UTC))
    text = page(admin_client, LIST)
    assert '<span class="task-time">2026-03-04</span> <span class="task-time">05:06:07</span>' \
        in text
    assert "05:06:09" in text
    assert "05:06:09" in page(admin_client, detail_url(row))
