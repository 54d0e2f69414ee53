"""End-to-end signals: receivers connected in the worker's process (testproject's
``signal_journal``, connected in its ``AppConfig.ready()``) see the task signals with Celery's
arguments in the prefork pool process that runs the task. SQLite only: signals do not depend
on the database."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from .conftest import Project

pytestmark = [pytest.mark.e2e,
              pytest.mark.parametrize("backend", ["sqlite"], indirect=True)]


def entries(journal: Path) -> list[dict[str, Any]]:
    if not journal.exists():
        return []
    return [json.loads(line) for line in journal.read_text().splitlines() if line]


def test_receivers_in_the_worker_see_prerun_postrun_success_and_failure(
        project: Project, tmp_path: Path) -> None:
    journal = tmp_path / "signals.jsonl"
    worker = project.worker("-c", "1", "-P", "prefork", DEMO_SIGNAL_JOURNAL=str(journal))
    ok = project.delay("add", 2, 3)
    failed = project.delay("fail", "on purpose")
    project.wait_state(ok, "SUCCESS")
    project.wait_state(failed, "FAILURE")
    project.wait("the postrun signals", lambda: sum(
        e["signal"] == "task_postrun" for e in entries(journal)) == 2, timeout=10)
    seen = entries(journal)

    def of(task_id: str) -> list[dict[str, Any]]:
        return [e for e in seen if e.get("task_id") == task_id or
                (e["signal"] == "task_success" and e.get("result") == 5 and task_id == ok)]

    assert [e["signal"] for e in of(ok)] == ["task_received", "task_prerun", "task_success",
                                             "task_postrun"]
    prerun, success, postrun = of(ok)[1:]
    assert prerun["sender"] == "testproject.demo.tasks.add"
    assert prerun["arguments"] == ["args", "kwargs", "task", "task_id"]
    assert prerun["args"] == [2, 3] and prerun["kwargs"] == {}
    assert success["result"] == 5
    assert postrun["retval"] == 5 and postrun["state"] == "SUCCESS"
    assert postrun["arguments"] == ["args", "kwargs", "retval", "state", "task", "task_id"]

    assert [e["signal"] for e in of(failed)] == ["task_received", "task_prerun",
                                                 "task_failure", "task_postrun"]
    failure = of(failed)[2]
    assert failure["exception"] == "ValueError"
    assert set(failure["arguments"]) >= {"task_id", "exception", "args", "kwargs",
                                         "traceback", "einfo"}
    assert of(failed)[3]["state"] == "FAILURE"

    # Sent in the pool process, which sent worker_process_init first; worker_ready in the
    # main process.
    [init] = [e for e in seen if e["signal"] == "worker_process_init"]
    assert prerun["pid"] == init["pid"] != worker.pid
    [ready] = [e for e in seen if e["signal"] == "worker_ready"]
    assert ready["pid"] == worker.pid
