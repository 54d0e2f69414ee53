"""What the browser tests share: ORM work beside Playwright's loop, a real worker process,
logging in, and where screenshots are kept."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from django.db import connection, connections

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]


def off_the_loop(work: Callable[[], T]) -> T:
    """ORM work in a thread of its own: Playwright's sync API runs an event loop in the
    test's thread, where Django refuses ORM calls."""

    def run() -> T:
        try:
            return work()
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run).result()


def database_url() -> str:
    """The URL of the test database, for the worker process."""
    settings = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{settings['NAME']}"
    if connection.vendor == "postgresql":
        password = f":{settings['PASSWORD']}" if settings.get("PASSWORD") else ""
        return (f"postgres://{settings['USER']}{password}@{settings['HOST'] or '127.0.0.1'}:"
                f"{settings['PORT'] or 5432}/{settings['NAME']}")
    if connection.vendor == "mysql":
        password = f":{settings['PASSWORD']}" if settings.get("PASSWORD") else ""
        return (f"mysql://{settings['USER']}{password}@{settings['HOST'] or '127.0.0.1'}:"
                f"{settings['PORT'] or 3306}/{settings['NAME']}")
    raise AssertionError(f"the worker of this test does not know {connection.vendor} URLs")


@contextlib.contextmanager
def running_worker(hostname: str, log: Path, url: str) -> Iterator[subprocess.Popen[bytes]]:
    """A ``taskworker`` on the database broker (threads pool), killed on the way out; its
    output goes to ``log`` and is printed if it ended other than by that kill. Usable while
    Playwright's loop runs: it makes no ORM call."""
    env = {**os.environ, "DATABASE_URL": url, "TASKS_BROKER_URL": "django://",
           "TASKS_RESULT_BACKEND": "django://", "TASKS_ALWAYS_EAGER": "False",
           "DEMO_BEAT_SCHEDULE": "False", "TASKS_HEARTBEAT_SECONDS": "1",
           "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "taskworker", "--hostname", hostname,
             "--pool", "threads", "--concurrency", "2"],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        if proc.returncode not in (0, -signal.SIGKILL):
            print(log.read_text(errors="replace"))


def artefact_folder(tmp_path: Path, name: str) -> Path:
    """Where a test keeps its screenshots: ``$TEST_ARTIFACTS/<name>`` if set, else in the
    test's temporary directory."""
    folder = Path(os.environ.get("TEST_ARTIFACTS") or tmp_path) / name
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nScreenshots: {folder}")
    return folder


def log_in(page: Any, base_url: str, next_path: str) -> None:
    page.goto(f"{base_url}/admin/login/?next={next_path}")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "password")
    page.click("input[type=submit]")
