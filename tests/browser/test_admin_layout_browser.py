"""The result and worker lists on a 1280x800 screen, as a new user sees them: no horizontal
scroll, the key columns in view, short task ids with the whole id on hover and a copy button.
Screenshots are kept (``$TEST_ARTIFACTS`` if set, else the test's temporary directory)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from django_tasks import states
from django_tasks.models import TaskResult, WorkerState

from . import support
from .support import artefact_folder

VIEWPORT = {"width": 1280, "height": 800}
RESULT_COLUMNS = ("task id", "task name", "state", "queue", "worker", "runtime (s)", "created",
                  "done")
WORKER_COLUMNS = ("hostname", "pid", "pool", "queues", "started", "last heartbeat", "alive")


@pytest.fixture
def artefacts(tmp_path: Path) -> Path:
    return artefact_folder(tmp_path, "admin-layout")


@pytest.fixture
def busy_tables(transactional_db: None) -> list[str]:
    """Rows as a real project has them: uuid ids, long task names and host names."""
    now = dt.datetime.now(dt.UTC)
    names = ["testproject.demo.tasks.send_welcome_email", "billing.tasks.reconcile_invoices",
             "testproject.demo.tasks.add", "reports.tasks.build_monthly_sales_report"]
    ids = []
    for i in range(12):
        task_id = str(uuid.uuid4())
        ids.append(task_id)
        state = [states.SUCCESS, states.FAILURE, states.STARTED, states.PENDING][i % 4]
        done = now - dt.timedelta(seconds=i) if state in states.READY_STATES else None
        TaskResult.objects.create(
            task_id=task_id, task_name=names[i % 4], state=state, queue="default",
            worker="" if state == states.PENDING else f"worker-{i % 2}@ip-10-0-3-17.internal",
            created_at=now - dt.timedelta(seconds=i + 3),
            started_at=now - dt.timedelta(seconds=i + 2) if state != states.PENDING else None,
            date_done=done, result=json.dumps({"exc_type": "ValueError",
                                               "exc_message": "no"}) if state == "FAILURE"
            else None)
    for i in range(3):
        WorkerState.objects.create(
            hostname=f"worker-{i}@ip-10-0-3-17.eu-central-1.compute.internal", pid=41000 + i,
            pool="prefork", concurrency=8, queues="default,mail,reports,billing",
            started_at=now - dt.timedelta(hours=3), last_heartbeat=now - dt.timedelta(
                seconds=1 if i else 3600), kind="worker")
    return ids


def log_in(page: Any, url: str, next_path: str) -> None:
    page.set_viewport_size(VIEWPORT)
    support.log_in(page, url, next_path)


def no_horizontal_scroll(page: Any) -> None:
    widths = page.evaluate("() => [document.scrollingElement.scrollWidth, "
                           "document.scrollingElement.clientWidth]")
    assert widths[0] <= widths[1], f"the page scrolls sideways: {widths}"


def header_in_view(page: Any, text: str) -> None:
    """The column's header is on screen: inside the viewport and inside the table's box
    (which would otherwise scroll sideways on its own)."""
    header = page.locator("#result_list thead th", has_text=text).first
    box = header.bounding_box()
    frame = page.locator("#changelist-form .results").bounding_box()
    assert box is not None and frame is not None, text
    right = min(VIEWPORT["width"], frame["x"] + frame["width"])
    assert box["x"] >= 0 and box["x"] + box["width"] <= right + 0.5, (text, box, frame)


def table_fits(page: Any) -> None:
    widths = page.evaluate("() => { const box = document.querySelector('#changelist-form "
                           ".results'); return [box.scrollWidth, box.clientWidth]; }")
    assert widths[0] <= widths[1], f"the table scrolls sideways: {widths}"


def test_the_result_list_fits_a_1280_pixel_screen(busy_tables: list[str], admin_user: User,
                                                  artefacts: Path, live_server: Any,
                                                  browser_page: Any) -> None:
    from playwright.sync_api import expect

    page = browser_page
    log_in(page, live_server.url, "/admin/django_tasks/taskresult/")
    expect(page.locator("#result_list")).to_be_visible()
    page.screenshot(path=str(artefacts / "results-1280.png"))
    no_horizontal_scroll(page)
    table_fits(page)
    for column in RESULT_COLUMNS:
        header_in_view(page, column)
    first = busy_tables[0]
    link = page.locator(f"#result_list a.task-id[title='{first}']")
    expect(link).to_have_text(first[:8] + "…")  # short, the whole id on hover
    # One line per row: the id does not wrap.
    assert link.bounding_box()["height"] < 24
    copy = page.locator(f"button.task-id-copy[data-task-id='{first}']")
    copy.click()
    expect(copy).to_have_attribute("data-copied", first)
    # Times to the second.
    done = page.locator("#result_list td.field-done").first.inner_text()
    assert len(done) == 19 and done[-3] == ":", done


def test_the_worker_list_fits_a_1280_pixel_screen(busy_tables: list[str], admin_user: User,
                                                  artefacts: Path, live_server: Any,
                                                  browser_page: Any) -> None:
    from playwright.sync_api import expect

    page = browser_page
    log_in(page, live_server.url, "/admin/django_tasks/workerstate/")
    expect(page.locator("#result_list")).to_be_visible()
    page.screenshot(path=str(artefacts / "workers-1280.png"))
    no_horizontal_scroll(page)
    table_fits(page)
    for column in WORKER_COLUMNS:
        header_in_view(page, column)
    # A live worker's page has no Delete link; a stopped one's has.
    page.locator("#result_list a", has_text="worker-1@").click()
    expect(page.locator("#content h1")).to_be_visible()
    expect(page.locator("a.deletelink")).to_have_count(0)
    page.go_back()
    page.locator("#result_list a", has_text="worker-0@").click()
    expect(page.locator("a.deletelink")).to_have_count(1)
