"""The foundation's end-to-end checks, written once for every broker outside the database.

Each takes the project (pointed at the broker already) and ``depth``, a function that counts
the messages waiting on the broker's ``default`` queue; the test modules of each broker
(``test_redis_broker.py``, ``test_amqp_broker.py``) call them and add what only their broker
has.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from .conftest import Project, alive, children, group_members

RESULTS = "django_tasks_taskresult"
Depth = Callable[[], int]


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def a_thousand_tasks_run_once(project: Project, depth: Depth) -> None:
    project.shell("from testproject.demo.tasks import add\n"
                  "for i in range(1000):\n"
                  "    add.delay(i, i)\n")
    assert depth() == 1000
    project.worker("-c", "2", "-P", "prefork", "-l", "warning")
    project.wait("1000 results", lambda: project.count(RESULTS, "state = 'SUCCESS'") == 1000,
                 timeout=60)
    rows = project.query(f"SELECT args, result, attempts FROM {RESULTS}")
    pairs = sorted((json.loads(args), json.loads(result)) for args, result, _ in rows)
    assert pairs == [([i, i], 2 * i) for i in range(1000)]
    assert {attempts for _, _, attempts in rows} == {1}
    project.wait("the broker to be empty", lambda: depth() == 0, timeout=10)


def kill_9_means_one_more_run(project: Project, depth: Depth, tmp_path: Path, *,
                              live_wait: float, **env: str) -> None:
    """Worker A is SIGKILLed mid-task after ``live_wait`` seconds beside worker B, in which
    B must not get the task; then B runs it once more (delivery 2)."""
    marker = tmp_path / "starts"
    first = project.worker("-c", "1", hostname="A", **env)
    project.wait_ready(first)
    # Long enough to outlast B's start and the wait on a loaded machine: A must be killed
    # while the task runs.
    task_id = project.delay("slow", seconds=live_wait + 9, marker=str(marker))
    project.wait("the task to start on A", lambda: len(lines(marker)) == 1)
    second = project.worker("-c", "1", hostname="B", **env)
    project.wait_ready(second)
    time.sleep(live_wait)
    assert len(lines(marker)) == 1, "the task was delivered again while its worker lived"

    pool = children(first.pid)
    assert pool, "worker A has no pool process"
    assert project.state(task_id) != "SUCCESS", "the task ended before A could be killed"
    os.kill(first.pid, signal.SIGKILL)  # the main process only; its pool must die with it
    project.wait("A's pool processes to die with it",
                 lambda: not any(alive(pid) for pid in pool), timeout=5)
    project.wait("no process of A to remain", lambda: not group_members(first.pid), timeout=5)

    project.wait_state(task_id, "SUCCESS", timeout=40)
    assert lines(marker) == [f"{task_id} A", f"{task_id} B"]
    result = project.result(task_id)
    assert result is not None
    assert (result["worker"], result["attempts"]) == ("B", 2)
    project.wait("the broker to be empty", lambda: depth() == 0, timeout=10)
    assert second.running()


def sigterm_finishes_the_running_task(project: Project, depth: Depth, tmp_path: Path) -> str:
    """The running task finishes and is acked; the one queued behind it goes back to the
    queue. Returns the id of that one."""
    marker = tmp_path / "starts"
    worker = project.worker("-c", "1")
    task_id = project.delay("slow", seconds=3, marker=str(marker))
    project.wait("the slow task to start", lambda: len(lines(marker)) == 1)
    waiting = project.delay("add", 1, 2)  # queued behind the running task
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.wait_exit(20) == 0
    assert project.state(task_id) == "SUCCESS"
    assert project.state(waiting) == "PENDING"
    assert "warm shutdown" in worker.output()
    project.wait("the waiting task back in the queue", lambda: depth() == 1, timeout=5)
    return waiting


#: A shell script that queues a task in a transaction rolled back, then one in a transaction
#: committed, and prints their ids.
ROLLED_BACK_THEN_COMMITTED = (
    "from django.db import transaction\n"
    "from testproject.demo.tasks import add\n"
    "try:\n"
    "    with transaction.atomic():\n"
    "        print(add.delay(1, 2).id)\n"
    "        raise RuntimeError('roll back')\n"
    "except RuntimeError:\n"
    "    pass\n"
    "with transaction.atomic():\n"
    "    print(add.delay(3, 4).id)\n")


def a_rolled_back_enqueue_never_runs(project: Project, depth: Depth) -> None:
    """Inside a transaction the message waits in the outbox: a rollback leaves nothing, a
    commit publishes it."""
    rolled_back, committed = project.shell(ROLLED_BACK_THEN_COMMITTED).split()[-2:]
    assert depth() == 1  # published to the broker after the commit
    project.worker("-c", "1")
    project.wait_state(committed, "SUCCESS")
    assert project.result(rolled_back) is None
    assert project.count("django_tasks_outboxmessage") == 0


def a_countdown_waits_in_the_database_until_due(project: Project, depth: Depth) -> None:
    """On a broker without delays of its own: in the outbox, published by a relay."""
    task_id = project.shell("from testproject.demo.tasks import add\n"
                            "print(add.apply_async((2, 3), countdown=3).id)").strip()
    [(due_at,)] = project.query("SELECT due_at FROM django_tasks_outboxmessage "
                                "WHERE task_id = %s", (task_id,))
    assert due_at is not None
    assert depth() == 0
    project.worker("-c", "1")
    project.wait_state(task_id, "SUCCESS", timeout=20)
    [(started,)] = project.query(f"SELECT started_at FROM {RESULTS} WHERE task_id = %s",
                                 (task_id,))
    assert _when(started) >= _when(due_at)  # not before it was due
    assert project.count("django_tasks_outboxmessage") == 0


_ON_TIME = """
import datetime as dt, time
from django_tasks import clock
from django_tasks.models import TaskResult
from testproject.demo.tasks import add
due, done = {}, {}

def publish(seconds):
    eta = clock.now() + dt.timedelta(seconds=seconds)
    due[add.apply_async((1, 2), eta=eta).id] = eta

def wait():
    global done
    deadline = time.monotonic() + 30
    while len(done) < len(due) and time.monotonic() < deadline:
        time.sleep(0.05)
        done = dict(TaskResult.objects.filter(task_id__in=list(due), state="SUCCESS")
                    .values_list("task_id", "date_done"))

for i in range(5):
    publish(1.5 + 0.3 * i)
    time.sleep(0.1)
wait()
for i in range(SOON):
    time.sleep(1.3)  # idle again, its looks a second apart
    publish(0.1)
wait()
print(" ".join(f"{(done[i] - due[i]).total_seconds():.3f}" if i in done else "missing"
               for i in due))
"""


def countdowns_start_on_time(project: Project, *, woken: bool = True) -> None:
    """An idle worker runs countdown and eta tasks at their time, not on its next idle look
    (up to a second later): the broker tells it when the next one comes due. Five tasks due
    1.5 to 2.7 s ahead, published 0.1 s apart, each finish within 0.3 s of their time
    (looking once a second, most would not). Where a publish wakes idle workers (``woken``),
    so do four more, each published to the idle worker 0.1 s before its time."""
    worker = project.worker("-c", "2")
    project.wait_ready(worker)
    time.sleep(1.5)  # idle: past the first looks, which follow each other quickly
    soon = 4 if woken else 0
    late = project.shell(_ON_TIME.replace("SOON", str(soon))).split()
    assert len(late) == 5 + soon and "missing" not in late, late
    assert all(0 <= float(x) < 0.3 for x in late), late


def long_tasks_queued_together_run_side_by_side(project: Project, pool: str,
                                                 long: float = 4.0, idle: float = 0.0) -> None:
    """Two long and two quick tasks queued in one commit on an idle ``-c 2`` worker (idle
    for ``idle`` seconds), whose consumers quick tasks have warmed up: the long ones run side
    by side, not one after the other in the process that took both (Celery's prefetch
    trap)."""
    worker = project.worker("-c", "2", "-P", pool, "-l", "info")
    project.wait_ready(worker)
    # Warm the consumers up: quick tasks grow their batches (and, on RabbitMQ, windows).
    project.shell("from testproject.demo.tasks import noop\nnoop.delay_many([()] * 300)\n")
    project.wait("the warm-up", lambda: project.count(RESULTS, "state = 'SUCCESS'") == 300)
    time.sleep(idle)
    # Queued in one commit, so that one consumer may well claim all four at once.
    ids = project.shell(
        "from django.db import transaction\n"
        "from testproject.demo.tasks import noop, slow\n"
        "with transaction.atomic():\n"
        f"    a = slow.delay({long})\n"
        "    noop.delay()\n"
        f"    b = slow.delay({long})\n"
        "    noop.delay()\n"
        "print(a.id, b.id)\n").split()[-2:]
    for task_id in ids:
        project.wait_state(task_id, "SUCCESS", timeout=4 * long + 30)
    spans = {}
    for task_id in ids:
        [(started, done)] = project.query(
            f"SELECT started_at, date_done FROM {RESULTS} WHERE task_id = %s", (task_id,))
        spans[task_id] = (_when(started), _when(done))
    (a_start, a_done), (b_start, b_done) = spans[ids[0]], spans[ids[1]]
    assert a_start < b_done and b_start < a_done, (
        f"the long tasks ran one after the other: {spans}\n{worker.output()}")


def _when(value: object) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value
    return dt.datetime.fromisoformat(str(value))


def a_bad_message_is_rejected(project: Project, depth: Depth,
                              publish_raw: Callable[[str, str], None]) -> None:
    """``publish_raw(task_id, body)`` puts a body that is not JSON on the queue."""
    publish_raw("bad-1", "not json {")
    after = project.delay("add", 1, 1)
    worker = project.worker("-c", "1")
    project.wait_state(after, "SUCCESS")
    project.wait_state("bad-1", "FAILURE")
    bad = project.result("bad-1")
    assert bad is not None and json.loads(bad["result"])["exc_type"] == "DecodeError"
    project.wait("the broker to be empty", lambda: depth() == 0, timeout=10)
    assert worker.running()


def an_outage_mid_drain_loses_nothing(project: Project, depth: Depth, tmp_path: Path,
                                      outage: Callable[[], AbstractContextManager[object]],
                                      seen: str, *, reruns: int = 4, **env: str) -> None:
    """``outage()`` cuts the worker off from the broker for the block's length, a quarter
    into a drain of journaled tasks: every task ends SUCCESS, none is lost, at most
    ``reruns`` run again (about a batch per process), the worker logged ``seen`` and goes on
    by itself."""
    journal = tmp_path / "journal"
    count = 400
    project.shell("from testproject.demo.tasks import record\n"
                  f"record.delay_many([({str(journal)!r}, 0.01)] * {count})\n")
    worker = project.worker("-c", "2", "-l", "warning", **env)
    project.wait("a quarter of the drain",
                 lambda: project.count(RESULTS, "state = 'SUCCESS'") >= count // 4)
    with outage():
        time.sleep(3)
    project.wait(f"all {count} tasks", lambda: project.count(
        RESULTS, "state = 'SUCCESS'") == count, timeout=90)
    assert worker.running()
    assert seen in worker.output()  # the outage was noticed
    starts = [line.split()[1] for line in lines(journal) if line.startswith("S ")]
    assert len(set(starts)) == count  # none lost
    assert len(starts) - count <= reruns, f"{len(starts) - count} tasks ran twice"
    project.wait("the broker to be empty", lambda: depth() == 0, timeout=20)


def rate_limit_holds(project: Project, depth: Depth, *, messages: int = 120,
                     window: float = 10.0) -> float:
    """Two workers of two processes drain ``messages`` of a task limited to 10/s: together
    they complete ten a second over ``window`` seconds from the first (within 10 %), every
    message once; returns the rate measured."""
    import datetime as dt

    workers = [project.worker("-c", "2", "-l", "warning", hostname=f"rate-{n}") for n in (1, 2)]
    for worker in workers:
        project.wait_ready(worker)
    project.shell("from testproject.demo.tasks import limited\n"
                  f"limited.delay_many([(n,) for n in range({messages})])\n")

    def done() -> list[dt.datetime]:
        rows = project.query(f"SELECT date_done FROM {RESULTS} WHERE state = 'SUCCESS'")
        return sorted(dt.datetime.fromisoformat(str(row[0])).replace(tzinfo=None)
                      for row in rows)

    project.wait("the first completion", lambda: bool(done()), timeout=60)
    first = done()[0]
    time.sleep(window + 2)
    rate = sum(1 for t in done() if t < first + dt.timedelta(seconds=window)) / window
    print(f"rate over {window:.0f}s: {rate:.2f}/s")
    assert abs(rate - 10.0) <= 1.0, f"{rate:.2f}/s, not within 10% of 10/s"
    project.wait("every message", lambda: len(done()) == messages, timeout=messages / 10 + 30)
    project.wait("the broker to be empty", lambda: depth() == 0, timeout=10)
    rows = project.query(f"SELECT retries FROM {RESULTS}")
    assert len(rows) == messages and {retries for (retries,) in rows} == {0}
    return rate


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_server(port: int, workdir: Path, *extra: str) -> subprocess.Popen[bytes]:
    """A redis-server of the test's own on ``port`` (append-only, fsync always, its files in
    ``workdir``), started and answering; ``extra`` arguments go to it."""
    import contextlib
    import shutil
    import socket

    import pytest

    from tests.conftest import IN_CI

    server = shutil.which("redis-server")
    if server is None:
        if IN_CI:
            pytest.fail("redis-server is not installed, and CI=true forbids skipping.")
        pytest.skip("redis-server is not installed")
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "yes", "--appendfsync", "always", "--dir", str(workdir), *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return proc
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"redis-server did not start on port {port}")
