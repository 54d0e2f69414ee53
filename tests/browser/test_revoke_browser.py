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


def wait_for_state(task_id: str, wanted: set[str], timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while (state := TaskResult.objects.get(task_id=task_id).state) not in wanted:
        assert time.monotonic() < deadline, f"{task_id} is {state}, not one of {wanted}"
        time.sleep(0.1)
    return state


def test_a_running_task_terminated_from_the_admin_stops(transactional_db: None,
                                                        admin_user: User, live_server: Any,
                                                        tmp_path: Path,
                                                        browser_page: Any) -> None:
    """Terminate through the control channel: the worker stops the task mid-run."""
    from playwright.sync_api import expect

    from testproject.demo.tasks import steps

    artefacts = artefact_folder(tmp_path, "revoke")
    log = tmp_path / "worker.log"
    with running_worker("terminate-e2e", log, database_url()):
        running = off_the_loop(lambda: steps.delay(600, 0.1).id)  # a minute, in short steps
        off_the_loop(lambda: wait_for_state(running, {states.STARTED, "PROGRESS"}))
        page = browser_page
        log_in(page, live_server.url, "/admin/django_tasks/taskresult/")
        row = page.locator("#result_list tr", has=page.locator(f"a[title='{running}']"))
        row.locator("input.action-select").check()
        page.select_option("select[name=action]", "terminate_tasks")
        page.locator("button[name=index]").click()
        expect(page.locator("#revoke-tasks")).to_contain_text("revoked, and stopped where it runs")
        page.get_by_role("button", name="Yes, revoke and terminate").click()
        expect(page.locator("ul.messagelist")).to_contain_text(
            "1 task revoked; 1 running task terminated.")
        page.screenshot(path=str(artefacts / "terminated.png"), full_page=True)
        # The task's own outcome: REVOKED, written by the worker that stopped it.
        off_the_loop(lambda: wait_for_state(running, {states.REVOKED}))
        deadline = time.monotonic() + 30
        while "revoked and terminated" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
    row_after = off_the_loop(lambda: TaskResult.objects.get(task_id=running))
    assert row_after.state == states.REVOKED and row_after.date_done is not None
