"""The queues page in a real browser beside a real worker: tasks ready on a queue nobody
consumes, countdowns delayed, and a task the worker is running in flight, each counted where
an operator reads it, on a 1280-pixel screen. Screenshots are kept
(``$TEST_ARTIFACTS/queues`` if set, else the test's temporary directory)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from django.contrib.auth.models import User

from django_tasks import states
from django_tasks.models import TaskResult

from .support import artefact_folder, database_url, log_in, off_the_loop, running_worker


def queue_tasks() -> str:
    """Three tasks on a queue no worker consumes, two countdowns, and one long task."""
    from testproject.demo.tasks import add, slow

    for i in range(3):
        add.apply_async((i, i), queue="parked")
    for i in range(2):
        add.apply_async((i, 1), countdown=3600)
    return str(slow.delay(60).id)


def wait_until_started(task_id: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while TaskResult.objects.get(task_id=task_id).state != states.STARTED:
        assert time.monotonic() < deadline, "the worker did not start the long task in time"
        time.sleep(0.1)


def counts(page: Any, queue: str) -> list[str]:
    row = page.locator(f"#tq-queues tr[data-queue='{queue}']")
    return [row.locator(f"td.tq-{name}").inner_text().strip()
            for name in ("ready", "delayed", "in-flight", "consumers")]


def test_the_queues_page_counts_ready_delayed_and_in_flight(
        transactional_db: None, admin_user: User, live_server: Any, tmp_path: Path,
        browser_page: Any) -> None:
    from playwright.sync_api import expect

    artefacts = artefact_folder(tmp_path, "queues")
    url = database_url()
    running = off_the_loop(queue_tasks)
    with running_worker("queues-e2e", tmp_path / "worker.log", url):
        off_the_loop(lambda: wait_until_started(running))
        page = browser_page
        page.set_viewport_size({"width": 1280, "height": 800})
        log_in(page, live_server.url, "/admin/django_tasks/")
        page.get_by_role("link", name="Queues", exact=True).click()
        expect(page.locator("h1")).to_have_text("Queues")
        expect(page.locator("#tq-broker")).to_have_text("django://")
        # Nobody consumes "parked": its tasks wait, and the row says no worker takes them.
        assert counts(page, "parked") == ["3", "0", "0", "0 no worker"]
        # The countdowns wait for their time; the long task is held by the worker.
        assert counts(page, "default") == ["0", "2", "1", "1"]
        expect(page.locator("#tq-totals")).to_contain_text("All queues")
        expect(page.locator("#tq-meanings")).to_contain_text("Rows leased to a worker")
        page.screenshot(path=str(artefacts / "queues.png"), full_page=True)
        # Readable on a 1280-pixel screen: nothing needs a horizontal scroll.
        width = page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= 1280, width

        # The dashboard's queue table shows the same counts.
        page.goto(f"{live_server.url}/admin/django_tasks/dashboard/")
        row = page.locator("#td-queues tr", has=page.locator("td", has_text="parked"))
        expect(row).to_contain_text("3")
        default = page.locator("#td-queues tbody tr").filter(
            has=page.get_by_role("cell", name="default", exact=True))
        expect(default.locator("td")).to_have_text(["default", "0", "2", "1"])
        page.screenshot(path=str(artefacts / "dashboard-queues.png"), full_page=True)
