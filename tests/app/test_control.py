"""The control channel without a worker process: signing, what a supervisor answers and
what it drops, and the commands' arguments and exit codes."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from django_tasks.conf import reset_cache
from django_tasks.control import channel, signing
from django_tasks.control.server import ControlServer
from django_tasks.models import ControlReply, ControlRequest, TaskResult
from django_tasks.worker.slots import Running, Slot

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def database_broker() -> Iterator[None]:
    with override_settings(TASKS_BROKER_URL="django://", TASKS_RESULT_BACKEND="django://",
                           TASKS_ALWAYS_EAGER=False):
        reset_cache()
        yield
    reset_cache()


class FakePool:
    def __init__(self, hostname: str = "w1@host") -> None:
        self.worker = SimpleNamespace(hostname=hostname, queues=["default"], pool="threads",
                                      prefetch=4, concurrency=1)
        self.slot = Slot()
        self.started_at = time.time()
        self.after_reply: Any = None
        self.terminated: list[tuple[str, int]] = []

    def consumer_slots(self) -> list[tuple[Slot, int]]:
        return [(self.slot, 4242)]

    def terminate(self, task_id: str, signum: int) -> Running | None:
        self.terminated.append((task_id, signum))
        running = self.slot.get()
        return running if running is not None and running.task_id == task_id else None

    def reconfigure(self) -> None:
        pass


def serve(server: ControlServer) -> None:
    server.next_look = 0.0
    server.serve()


def replies(nonce: str, *hosts: str) -> dict[str, dict[str, Any]]:
    return {r.hostname: r.body for r in channel.gather(nonce, timeout=0.1, destination=hosts)}


def test_signatures() -> None:
    signature = signing.sign('{"a": 1}')
    assert signing.verify('{"a": 1}', signature)
    assert not signing.verify('{"a": 2}', signature)
    assert not signing.verify('{"a": 1}', "")
    with override_settings(SECRET_KEY="new-key-" + "x" * 50,
                           SECRET_KEY_FALLBACKS=["django-insecure-old"]):
        old = signing.sign("payload", secret="django-insecure-old")
        assert signing.verify("payload", old)  # rotated: the old key still checks
    assert not signing.verify("payload", old)


def test_a_worker_answers_what_is_meant_for_it() -> None:
    server = ControlServer(FakePool())  # type: ignore[arg-type]
    ping = channel.send("ping")
    other = channel.send("ping", destination=["w2@host"])
    unknown = channel.send("apply_any_task")
    serve(server)
    assert replies(ping, "w1@host") == {"w1@host": {"ok": "pong"}}
    assert replies(other, "w1@host") == {}
    assert replies(unknown, "w1@host") == {
        "w1@host": {"error": "unknown command 'apply_any_task'"}}


def test_active_shows_the_stored_masked_arguments() -> None:
    pool = FakePool()
    TaskResult.objects.create(task_id="t1", task_name="shop.charge", state="STARTED",
                              created_at=channel._now(), args='["**"]', kwargs="{}")
    pool.slot.set(Running(1, 1, "t1", "shop.charge", "default", 1, 0, time.time(), 0, 0))
    server = ControlServer(pool)  # type: ignore[arg-type]
    nonce = channel.send("active")
    serve(server)
    (task,) = replies(nonce, "w1@host")["w1@host"]["ok"]
    assert (task["id"], task["name"], task["args"], task["worker_pid"]) == (
        "t1", "shop.charge", '["**"]', 4242)


def test_bad_signatures_and_old_requests_are_dropped(caplog: pytest.LogCaptureFixture) -> None:
    early = channel.send("ping")
    ControlRequest.objects.filter(nonce=early).update(
        payload=ControlRequest.objects.get(nonce=early).payload.replace(
            '"sent": ', '"sent": 1'))  # sent long ago: the signature no longer checks either
    old_payload = json.dumps({"id": "a" * 32, "command": "ping", "arguments": {},
                              "destination": [], "sent": time.time() - 3600})
    ControlRequest.objects.create(nonce="a" * 32, payload=old_payload,
                                  signature=signing.sign(old_payload),
                                  created_at=channel._now())
    forged = channel.send("shutdown")
    ControlRequest.objects.filter(nonce=forged).update(signature="0" * 64)
    pool = FakePool()
    server = ControlServer(pool)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, "django_tasks.control"):
        serve(server)
    assert "signature is bad or missing" in caplog.text
    assert pool.after_reply is None  # the forged shutdown did nothing
    assert not ControlReply.objects.exists()


def test_revoke_with_terminate_reaches_the_pool() -> None:
    pool = FakePool()
    server = ControlServer(pool)  # type: ignore[arg-type]
    nonce = channel.send("revoke", {"task_ids": ["t9"], "terminate": True,
                                    "signal": "SIGKILL"})
    serve(server)
    assert replies(nonce, "w1@host") == {"w1@host": {"ok": {"terminated": []}}}
    assert pool.terminated == [("t9", 9)]


def run(name: str, *args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(name, *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_commands_exit_69_when_no_worker_answers() -> None:
    with pytest.raises(SystemExit) as exit_info:
        run("taskinspect", "ping", "--timeout", "0.2")
    assert exit_info.value.code == 69
    with pytest.raises(SystemExit) as exit_info:
        run("taskcontrol", "pool_grow", "--timeout", "0.2")
    assert exit_info.value.code == 69


@pytest.mark.parametrize("args, message", [
    (("taskinspect", "ping", "--timeout", "0"), "--timeout"),
    (("taskcontrol", "pool_shrink", "0"), "N must be at least 1"),
    (("taskcontrol", "rate_limit", "shop.charge", "fast"), "fast"),
    (("taskcontrol", "add_consumer", "bad\x00queue"), "control character"),
])
def test_bad_arguments_are_one_line_errors(args: tuple[str, ...], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        run(*args)


def test_revoke_without_terminate_needs_no_worker() -> None:
    TaskResult.objects.create(task_id="q1", task_name="shop.charge", state="PENDING",
                              created_at=channel._now())
    out, _ = run("taskcontrol", "revoke", "q1", "done-already")
    assert "q1: revoked" in out
    assert TaskResult.objects.get(task_id="q1").state == "REVOKED"


def test_requests_sent_before_the_worker_started_are_not_acted_on() -> None:
    early = channel.send("ping")
    server = ControlServer(FakePool())  # type: ignore[arg-type]
    late = channel.send("ping")
    serve(server)
    assert replies(early, "w1@host") == {}
    assert replies(late, "w1@host") == {"w1@host": {"ok": "pong"}}


def test_terminate_as_json_keeps_stdout_json() -> None:
    TaskResult.objects.create(task_id="q2", task_name="shop.charge", state="STARTED",
                              created_at=channel._now())
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(SystemExit) as exit_info:
        call_command("taskcontrol", "terminate", "q2", "--json", "--timeout", "0.2",
                     stdout=out, stderr=err)
    assert exit_info.value.code == 69  # no worker answered
    assert json.loads(out.getvalue()) == {}
    assert "q2: revoked" in err.getvalue()
    assert TaskResult.objects.get(task_id="q2").state == "REVOKED"


def test_reserved_lists_the_held_batch_with_stored_names() -> None:
    pool = FakePool()
    TaskResult.objects.create(task_id="r1", task_name="shop.ship", state="PENDING",
                              created_at=channel._now(), args="[1]", kwargs="{}")
    pool.slot.hold([(1, 1, 1), (2, 1, 1)], ["r1", "r-unknown"])
    server = ControlServer(pool)  # type: ignore[arg-type]
    nonce = channel.send("reserved")
    serve(server)
    assert replies(nonce, "w1@host")["w1@host"]["ok"] == [
        {"id": "r1", "name": "shop.ship", "args": "[1]", "kwargs": "{}", "worker_pid": 4242},
        {"id": "r-unknown", "name": "", "args": "?", "kwargs": "?", "worker_pid": 4242}]
