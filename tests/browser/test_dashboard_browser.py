"""The dashboard in a real browser while a real worker runs tasks: the charts are drawn, and
they grow on their own as more tasks finish. Screenshots are kept (the test prints where:
``$TEST_ARTIFACTS`` if set, else the test's pytest temporary directory)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connections

from django_tasks import states
from django_tasks.models import TaskResult
from django_tasks.results import stats

from .support import database_url, off_the_loop, running_worker

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def worker(transactional_db: None, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    try:
        with running_worker("dashboard-e2e", tmp_path / "worker.log", database_url()) as proc:
            yield proc
    finally:
        connections.close_all()


@pytest.fixture(autouse=True)
def _fresh_chart() -> Iterator[None]:
    stats.forget_cached()
    yield
    stats.forget_cached()


@pytest.fixture
def artefacts(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("TEST_ARTIFACTS") or tmp_path) / "dashboard"
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nDashboard screenshots: {folder}")
    return folder


def queue_and_wait(adds: int, failures: int = 0, timeout: float = 60) -> None:
    from testproject.demo.tasks import add, fail

    ids = [add.delay(i, i).id for i in range(adds)]
    ids += [fail.delay(f"failure {i}").id for i in range(failures)]
    deadline = time.monotonic() + timeout
    while TaskResult.objects.filter(task_id__in=ids, state__in=states.READY_STATES
                                    ).count() < len(ids):
        assert time.monotonic() < deadline, "the worker did not finish the tasks in time"
        time.sleep(0.1)


def plotted(page: Any) -> int:
    return int(float(page.locator("#chart-hour").get_attribute("data-total")))


def test_the_dashboard_charts_grow_while_tasks_run(
        worker: subprocess.Popen[bytes], admin_user: User, artefacts: Path, live_server: Any,
        browser_page: Any) -> None:
    from playwright.sync_api import expect

    off_the_loop(lambda: queue_and_wait(adds=6, failures=2))
    page = browser_page
    page.goto(f"{live_server.url}/admin/login/?next=/admin/django_tasks/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "password")
    page.click("input[type=submit]")
    page.get_by_role("link", name="Dashboard").click()
    expect(page.locator("h1")).to_have_text("Task dashboard")
    # A worker keeps its runs back for up to a second before counting them (on PostgreSQL):
    # the page shows them at its next refresh.
    page.wait_for_function(
        "() => Number(document.getElementById('chart-hour').dataset.total) >= 8",
        timeout=20_000)
    expect(page.locator("#chart-hour canvas").first).to_be_visible()
    expect(page.locator("#chart-day canvas").first).to_be_visible()
    expect(page.locator("#td-tasks")).to_contain_text("testproject.demo.tasks.add")
    expect(page.locator("#td-failures")).to_contain_text("testproject.demo.tasks.fail")
    expect(page.locator("#td-failures")).to_contain_text("ValueError: failure")
    expect(page.locator("#td-workerlist")).to_contain_text("dashboard-e2e")
    expect(page.locator("#td-workers")).to_have_text("1")
    before = plotted(page)
    assert before == 8
    page.screenshot(path=str(artefacts / "dashboard-before.png"), full_page=True)

    refreshes = int(page.locator("#tasks-dashboard").get_attribute("data-refreshes"))
    off_the_loop(lambda: queue_and_wait(adds=20, failures=3))
    # No reload: the page asks for new data by itself every few seconds.
    page.wait_for_function(
        "() => Number(document.getElementById('chart-hour').dataset.total) >= 31",
        timeout=20_000)
    assert int(page.locator("#tasks-dashboard").get_attribute("data-refreshes")) > refreshes
    assert plotted(page) == 31
    expect(page.locator("#td-total")).to_have_text("31")
    expect(page.locator("#td-failure")).to_have_text("5")
    page.screenshot(path=str(artefacts / "dashboard-after.png"), full_page=True)
    # Readable on a 1280-pixel screen: nothing needs a horizontal scroll.
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 1280, width
