"""The result admin in a real browser: log in, filter failures, read a traceback, queue again."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

import pytest
from django.contrib.auth.models import User

from django_tasks import states
from django_tasks.models import TaskResult

SCREENSHOT = "/tmp/admin.png"
LIST_SCREENSHOT = "/tmp/admin-list.png"


@pytest.fixture
def results(transactional_db: None) -> None:
    now = dt.datetime.now(dt.UTC)
    common = {"args": "[2, 3]", "kwargs": "{}", "queue": "default", "worker": "w1@host",
              "created_at": now - dt.timedelta(seconds=5),
              "started_at": now - dt.timedelta(seconds=4), "date_done": now}
    TaskResult.objects.create(task_id="2f5e-ok", task_name="testproject.demo.tasks.add",
                              state=states.SUCCESS, result="5", **common)
    TaskResult.objects.create(
        task_id="9c1a-failed", task_name="testproject.demo.tasks.fail", state=states.FAILURE,
        result=json.dumps({"exc_type": "ValueError", "exc_module": "builtins",
                           "exc_message": "this task always fails"}),
        traceback=('Traceback (most recent call last):\n'
                   '  File "testproject/demo/tasks.py", line 30, in fail\n'
                   '    raise ValueError("this task always fails")\n'
                   'ValueError: this task always fails\n'),
        **common)


def task_link(page: Any, task_id: str) -> Any:
    return page.locator(f"#result_list a.task-id[title='{task_id}']")


def test_failed_task_traceback_is_readable(results: None, admin_user: User,
                                           live_server: Any, browser_page: Any) -> None:
    from playwright.sync_api import expect

    page = browser_page
    page.goto(f"{live_server.url}/admin/login/?next=/admin/django_tasks/taskresult/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "password")
    page.click("input[type=submit]")
    # Ids are shown short (their first 8 characters), the whole id in the title.
    expect(task_link(page, "9c1a-failed")).to_have_text("9c1a-fai…")
    expect(task_link(page, "2f5e-ok")).to_have_text("2f5e-ok")

    page.locator("#changelist-filter").get_by_role("link", name="Failure", exact=True).click()
    expect(page).to_have_url(re.compile(r"state__exact=FAILURE"))
    expect(task_link(page, "2f5e-ok")).to_have_count(0)
    page.screenshot(path=LIST_SCREENSHOT)

    task_link(page, "9c1a-failed").click()
    traceback = page.locator("pre.traceback")
    expect(traceback).to_be_visible()
    expect(traceback).to_contain_text('raise ValueError("this task always fails")')
    expect(traceback).to_contain_text("ValueError: this task always fails")
    expect(page.locator("body")).to_contain_text('"exc_type": "ValueError"')
    page.screenshot(path=SCREENSHOT, full_page=True)


def test_a_failed_task_is_queued_again_from_the_list(results: None, admin_user: User,
                                                     live_server: Any,
                                                     browser_page: Any) -> None:
    from playwright.sync_api import expect

    page = browser_page
    page.goto(f"{live_server.url}/admin/login/?next=/admin/django_tasks/taskresult/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "password")
    page.click("input[type=submit]")
    row = page.locator("#result_list tr", has=page.locator("a[title='9c1a-failed']"))
    row.locator("input.action-select").check()
    page.select_option("select[name=action]", "queue_again")
    page.locator("button[name=index]").click()
    messages = page.locator("ul.messagelist")
    expect(messages).to_contain_text("Queued 1 task(s) again: 9c1a-failed → ")
    new_id = re.search(r"9c1a-failed → ([0-9a-f-]{36})", messages.inner_text())
    assert new_id, messages.inner_text()
    pending = page.locator("#result_list tr", has=page.locator(f"a[title='{new_id.group(1)}']"))
    expect(pending).to_contain_text("PENDING")  # the new row, queued
    expect(task_link(page, "9c1a-failed")).to_have_count(1)  # the old one stays
