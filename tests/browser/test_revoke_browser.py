"""Revoke a queued task from the admin in a real browser, then start a real worker: the task
never runs (state REVOKED, its side effect absent) while a task queued after it does.
Screenshots are kept (``$TEST_ARTIFACTS/revoke`` if set, else the test's temporary
directory)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from django.contrib.auth.models import User

from django_tasks import states
from django_tasks.models import QueuedMessage, TaskResult

from .support import artefact_folder, database_url, log_in, off_the_loop, running_worker


def queue_tasks(marker: Path) -> tuple[str, str]:
    """A task whose one effect is to write ``marker``, then a plain one behind it."""
    from testproject.demo.tasks import add, slow

    doomed = slow.delay(0, marker=str(marker)).id
    time.sleep(0.01)  # created after it, to the microsecond: the list's order is certain
    return doomed, add.delay(20, 22).id


def wait_until_settled(doomed: str, later: str, timeout: float = 60) -> None:
    """Until the worker has run the later task and acked the revoked one's message."""
    deadline = time.monotonic() + timeout
    while (TaskResult.objects.get(task_id=later).state != states.SUCCESS
           or QueuedMessage.objects.filter(task_id=doomed).exists()):
        assert time.monotonic() < deadline, "the worker did not get through the queue in time"
        time.sleep(0.1)


def test_a_task_revoked_in_the_admin_never_runs(transactional_db: None, admin_user: User,
                                                live_server: Any, tmp_path: Path,
                                                browser_page: Any) -> None:
    from playwright.sync_api import expect

    artefacts = artefact_folder(tmp_path, "revoke")
    marker = tmp_path / "ran.txt"
    url = database_url()
    doomed, later = off_the_loop(lambda: queue_tasks(marker))
    page = browser_page
    page.set_viewport_size({"width": 1280, "height": 800})
    log_in(page, live_server.url, "/admin/django_tasks/taskresult/")
    row = page.locator("#result_list tr", has=page.locator(f"a[title='{doomed}']"))
    expect(row).to_contain_text("PENDING")
    row.locator("input.action-select").check()
    page.select_option("select[name=action]", "revoke_tasks")
    page.locator("button[name=index]").click()

    expect(page.locator("h1")).to_have_text("Revoke tasks?")
    expect(page.locator("#revoke-tasks")).to_contain_text(doomed)
    expect(page.locator("#revoke-tasks")).to_contain_text("revoked: it never runs")
    page.screenshot(path=str(artefacts / "revoke-confirmation.png"), full_page=True)
    page.get_by_role("button", name="Yes, revoke").click()

    expect(page.locator("ul.messagelist")).to_contain_text("1 task revoked.")
    expect(row).to_contain_text("REVOKED")
    later_row = page.locator("#result_list tr", has=page.locator(f"a[title='{later}']"))
    expect(later_row).to_contain_text("PENDING")
    page.screenshot(path=str(artefacts / "revoked-in-list.png"), full_page=True)

    # Only now a worker: it fetches the revoked message first and must not run it.
    log = tmp_path / "worker.log"
    with running_worker("revoke-e2e", log, url):
        off_the_loop(lambda: wait_until_settled(doomed, later))
    assert not marker.exists(), "the revoked task ran"
    assert off_the_loop(lambda: TaskResult.objects.get(task_id=doomed).state) == states.REVOKED
    assert "is already REVOKED; acked without running it again" in log.read_text()

    page.reload()
    expect(later_row).to_contain_text("SUCCESS")
    expect(row).to_contain_text("REVOKED")
    row.locator("a.task-id").click()
    expect(page.locator(".field-coloured_state")).to_contain_text("REVOKED")
    expect(page.locator("button[value=revoke_tasks]")).to_have_count(0)  # finished now
    page.screenshot(path=str(artefacts / "revoked-result-page.png"), full_page=True)


def test_the_revoke_button_on_a_result_page(transactional_db: None, admin_user: User,
                                            live_server: Any, tmp_path: Path,
                                            browser_page: Any) -> None:
    from playwright.sync_api import expect

    artefacts = artefact_folder(tmp_path, "revoke")
    doomed, _ = off_the_loop(lambda: queue_tasks(tmp_path / "ran.txt"))
    page = browser_page
    log_in(page, live_server.url, "/admin/django_tasks/taskresult/")
    page.locator(f"a.task-id[title='{doomed}']").click()
    page.locator("button[value=revoke_tasks]").click()
    expect(page.locator("h1")).to_have_text("Revoke tasks?")
    page.get_by_role("button", name="Yes, revoke").click()
    # Back on the task's page, which says what happened.
    expect(page.locator("ul.messagelist")).to_contain_text("1 task revoked.")
    expect(page.locator(".field-coloured_state")).to_contain_text("REVOKED")
    expect(page.locator("button[value=revoke_tasks]")).to_have_count(0)
    page.screenshot(path=str(artefacts / "revoked-from-its-page.png"), full_page=True)
    assert off_the_loop(lambda: TaskResult.objects.get(task_id=doomed).state) == states.REVOKED
