"""The health probe: reads a worker's health file, never imports Django."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

import django_tasks
from django_tasks.probe import check, main

ROOT = Path(__file__).resolve().parents[2]


def health(path: Path, **changes: object) -> str:
    state = {"hostname": "w1@host", "pid": os.getpid(), "written": time.time(),
             "heartbeat_age": 1.0, "poll_age": 0.5, "running": 2, "stall_timeout": 120.0}
    state.update(changes)
    path.write_text(json.dumps(state))
    return str(path)


def test_a_fresh_file_of_a_live_process_is_alive_and_ready(tmp_path: Path) -> None:
    path = health(tmp_path / "h")
    assert check(path) == (True, f"worker w1@host (pid {os.getpid()}) is alive")
    assert check(path, ready=True) == (
        True, f"worker w1@host (pid {os.getpid()}) is ready: 2 task(s) running")


@pytest.mark.parametrize(("changes", "ready", "reason"), [
    ({"written": time.time() - 60}, False, "has not updated"),
    ({"pid": 2 ** 22 + 12345}, False, "is not running"),
    ({"heartbeat_age": 45.0}, True, "heartbeat has not reached the database for 45s"),
    ({"poll_age": 31.0}, True, "has not polled the broker for 31s"),
])
def test_what_fails_and_why(tmp_path: Path, changes: dict[str, object], ready: bool,
                            reason: str) -> None:
    passed, explanation = check(health(tmp_path / "h", **changes), ready=ready)
    assert not passed
    assert reason in explanation


def test_a_missing_or_broken_file_fails(tmp_path: Path) -> None:
    assert "no health file" in check(str(tmp_path / "none"))[1]
    (tmp_path / "bad").write_text("{")
    assert "unreadable health file" in check(str(tmp_path / "bad"))[1]


def test_the_command_exits_0_or_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([health(tmp_path / "h"), "--ready"]) == 0
    assert "is ready" in capsys.readouterr().out
    assert main([health(tmp_path / "h", poll_age=5.0), "--ready", "--max-lag", "2"]) == 1
    assert "has not polled the broker" in capsys.readouterr().err


def test_the_probe_does_not_import_django(tmp_path: Path) -> None:
    path = health(tmp_path / "h")
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "django_tasks.probe",
                           path], cwd=ROOT, capture_output=True, text=True, timeout=30,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    imported = re.findall(r"\|\s+(\S+)$", proc.stderr, re.MULTILINE)
    assert "django_tasks" in imported  # the package; the probe itself runs as __main__
    assert not [m for m in imported if m == "django" or m.startswith("django.")]


def test_the_public_names_are_all_importable() -> None:
    assert set(django_tasks.__all__) == set(django_tasks._WHERE)
    for name in django_tasks.__all__:
        assert getattr(django_tasks, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        django_tasks.nope  # noqa: B018
