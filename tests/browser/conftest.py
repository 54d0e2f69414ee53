"""Headless Chromium (Debian's package) driven by Playwright.

Skipped on a machine without the ``playwright`` package or Chromium; a failure under
``CI=true``, where both must be installed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import IN_CI

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def _missing(what: str) -> None:
    if IN_CI:
        pytest.fail(f"{what}, and CI=true forbids skipping the browser tests.")
    pytest.skip(what)


@pytest.fixture
def browser_page() -> Iterator[Any]:
    """A Playwright page in a fresh headless Chromium.

    Ask for it after the fixtures that write to the database: Playwright's sync API runs an
    event loop, and Django refuses ORM calls while one runs.
    """
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("The playwright package is not installed (pip install playwright)")
    if not os.access(CHROMIUM, os.X_OK):
        _missing(f"Chromium is not at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(15_000)
            yield page
        finally:
            browser.close()
