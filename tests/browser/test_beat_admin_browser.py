"""The periodic task admin in a real browser: a task made with a crontab from the popup, the
beat queueing it, its result linked from the list, and "Run now"."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest
from django.contrib.auth.models import User
from django.db import connections

from django_tasks.beat.scheduler import Scheduler
from django_tasks.models import PeriodicTask

T = TypeVar("T")
LIST_SCREENSHOT = "/tmp/beat-admin-list.png"
FORM_SCREENSHOT = "/tmp/beat-admin-form.png"


def off_the_loop(work: Callable[[], T]) -> T:
    """Run ORM work in a thread of its own: Playwright's sync API runs an event loop in the
    test's thread, where Django refuses ORM calls. The thread's connection is closed after."""

    def run() -> T:
        try:
            return work()
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run).result()


def tick_after_next_run(name: str) -> str:
    """One beat tick just after the task's next run; the id of the task it queued."""
    row = PeriodicTask.objects.get(name=name)
    assert row.next_run_at is not None
    report = Scheduler("test-beat").tick(row.next_run_at + dt.timedelta(seconds=1))
    assert report.queued == 1
    row.refresh_from_db()
    return row.last_task_id


@pytest.fixture
def admin_login(transactional_db: None, admin_user: User) -> str:
    return "admin"


def test_a_crontab_task_made_in_the_admin_is_queued_by_the_beat(
        admin_login: str, live_server: Any, browser_page: Any) -> None:
    from playwright.sync_api import expect

    page = browser_page
    page.goto(f"{live_server.url}/admin/login/?next=/admin/django_tasks/periodictask/add/")
    page.fill("#id_username", admin_login)
    page.fill("#id_password", "password")
    page.click("input[type=submit]")

    page.fill("#id_name", "every-minute")
    page.fill("#id_task", "testproject.demo.tasks.add")
    page.fill("#id_args", "[2, 3]")
    with page.expect_popup() as opened:
        page.click("#add_id_crontab")
    popup = opened.value
    expect(popup.locator("#id_minute")).to_have_value("*")
    popup.fill("#id_minute", "*")
    popup.click("input[name=_save]")
    crontab = page.locator("#id_crontab option:checked")
    expect(crontab).to_have_text("every minute (UTC)")
    page.screenshot(path=FORM_SCREENSHOT, full_page=True)
    page.click("input[name=_save]")

    expect(page.locator("ul.messagelist")).to_contain_text("was added successfully")
    row = page.locator("#result_list tr", has_text="every-minute")
    expect(row.locator("td.field-schedule_words")).to_have_text("every minute (UTC)")
    expect(row.locator("td.field-next_run")).to_contain_text(re.compile(r"in \d+.seconds?"))
    expect(row.locator("td.field-last_run")).to_have_text("never")

    task_id = off_the_loop(lambda: tick_after_next_run("every-minute"))
    page.reload()
    last_run = row.locator("td.field-last_run a.last-result")
    expect(last_run).to_have_text("PENDING")  # no worker runs here
    expect(row.locator("td.field-total_run_count")).to_have_text("1")
    page.screenshot(path=LIST_SCREENSHOT, full_page=True)
    last_run.click()
    expect(page.locator("div.field-task_id")).to_contain_text(task_id)
    expect(page.locator("div.field-coloured_state")).to_contain_text("PENDING")
    expect(page.locator("div.field-task_name")).to_contain_text("testproject.demo.tasks.add")

    page.go_back()
    row.locator("input.action-select").check()
    page.select_option("select[name=action]", "run_now")
    page.locator("button[name=index]").click()
    message = page.locator("ul.messagelist")
    expect(message).to_contain_text("Queued 1 run(s) now: every-minute → ")
    expect(message).to_contain_text("The schedule is unchanged.")
    new_id = re.search(r"every-minute → ([0-9a-f-]{36})", message.inner_text())
    assert new_id and new_id.group(1) != task_id
    message.get_by_role("link", name=new_id.group(1)).click()
    expect(page.locator("#result_list")).to_contain_text("PENDING")
