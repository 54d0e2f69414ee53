"""The workflows' end-to-end checks, written once for every broker.

Each takes the project (pointed at its broker already) and ``depth``, a function that counts
the messages waiting on one of the broker's queues (``"default"`` unless named);
``test_workflows.py`` calls them on the database broker, ``test_workflows_brokers.py`` on
Redis and RabbitMQ. Every check ends with the outbox empty (every follow-up published) and
the broker empty.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .conftest import Project

RESULTS = "django_tasks_taskresult"
IMPORTS = ("from django_tasks import AsyncResult, GroupResult, chain, chord, group\n"
           "from testproject.demo.tasks import add, multiply, tsum, fail, flaky, record\n")
Depth = Callable[..., int]
#: Leases run out in seconds, so that a killed worker's messages come back quickly.
SHORT_LEASE = {"TASKS_LEASE_SECONDS": "3", "TASKS_HEARTBEAT_SECONDS": "1"}


def drained(project: Project, depth: Depth, *queues: str) -> None:
    """Wait for the outbox and ``queues`` (``default``) to be empty."""
    project.wait("every follow-up published",
                 lambda: project.count("django_tasks_outboxmessage") == 0, timeout=20)
    for queue in queues or ("default",):
        project.wait(f"the queue {queue} to be empty", lambda q=queue: depth(q) == 0,
                     timeout=10)


def of(project: Project, task: str, where: str = "1 = 1", params: tuple[Any, ...] = ()) -> int:
    """Result rows of ``testproject.demo.tasks.<task>`` (that also match ``where``)."""
    return project.count(RESULTS, f"task_name = %s AND {where}",
                         (f"testproject.demo.tasks.{task}", *params))


def link_chain_and_retries(project: Project, depth: Depth) -> None:
    """``link`` stores the callback's result as the child's, a chain of ten returns 11 (and
    its parent 10), and a task that fails twice is retried twice and succeeds."""
    out = project.shell(IMPORTS + (
        "linked = add.apply_async((2, 2), link=multiply.s(3))\n"
        "flow = chain(add.s(1, 1), *[add.s(1) for _ in range(9)]).apply_async()\n"
        "retried = flaky.delay(2)\n"
        "print(linked.id)\nprint(flow.id)\nprint(retried.id)\n")).split()
    linked, flow, retried = out
    project.worker("-c", "2", "-P", "prefork")
    project.wait_state(flow, "SUCCESS", timeout=60)
    project.wait_state(retried, "SUCCESS", timeout=30)
    out = project.shell(IMPORTS + (
        f"linked = AsyncResult({linked!r})\n"
        "print(linked.get(timeout=30), [c.get(timeout=30) for c in linked.children])\n"
        f"flow = AsyncResult({flow!r})\n"
        "print(flow.get(timeout=30), flow.parent.get(timeout=30))\n"))
    assert out.splitlines() == ["4 [12]", "11 10"]
    rows = project.query(f"SELECT COUNT(*), COUNT(DISTINCT root_id) FROM {RESULTS} "
                         "WHERE task_name = %s", ("testproject.demo.tasks.add",))
    assert rows == [(11, 2)]  # the chain's ten share a root; the linked task is its own
    # Retried under its own id: one row, two retries, the third attempt's result.
    assert project.query(f"SELECT result, retries FROM {RESULTS} WHERE task_id = %s",
                         (retried,)) == [("2", 2)]
    assert of(project, "flaky") == 1
    drained(project, depth)


def a_group_and_a_chord_of_a_thousand(project: Project, depth: Depth) -> None:
    """Both complete; the chord is one counter row counted up to its size, with no polling
    task: one message per member and one for the callback."""
    out = project.shell(IMPORTS + (
        "g = group(add.s(i, i) for i in range(1000)).apply_async()\n"
        "g.save()\n"
        "c = chord((add.s(i, 1) for i in range(1000)), tsum.s()).apply_async()\n"
        "print(g.id)\nprint(c.id)\n")).split()
    group_id, callback = out
    assert depth() == 2000
    project.worker("-c", "2", "-P", "prefork")
    project.wait_state(callback, "SUCCESS", timeout=120)
    out = project.shell(IMPORTS + (
        f"g = GroupResult.restore({group_id!r})\n"
        "print(g.completed_count(), g.get(timeout=60) == [i + i for i in range(1000)])\n"
        f"print(AsyncResult({callback!r}).get(timeout=10))\n"))
    assert out.splitlines() == ["1000 True", str(sum(i + 1 for i in range(1000)))]
    # Every message had a result row, and there are exactly that many.
    assert project.count(RESULTS) == 2001
    assert of(project, "tsum") == 1
    rows = project.query("SELECT size, done, state FROM django_tasks_taskgroup "
                         "WHERE callback_id = %s", (callback,))
    assert rows == [(1000, 1000, "SUCCESS")]
    drained(project, depth)


def a_failing_member_fails_the_chord_within_a_second(project: Project, depth: Depth) -> None:
    out = project.shell(IMPORTS + (
        "header = [add.s(i, i) for i in range(50)] + [fail.si('member failed')]\n"
        "c = chord(header, tsum.s()).apply_async()\n"
        "print(c.id)\nprint(c.parent.results[-1].id)\n")).split()
    callback, member = out
    project.worker("-c", "2", "-P", "prefork")
    project.wait_state(callback, "FAILURE", timeout=60)
    done = dict(project.query(
        f"SELECT task_id, date_done FROM {RESULTS} WHERE task_id IN (%s, %s)",
        (callback, member)))
    assert project.state(member) == "FAILURE"
    lag = (moment(done[callback]) - moment(done[member])).total_seconds()
    assert 0 <= lag < 1.0
    result = project.result(callback)
    assert result is not None and member in json.dumps(result)
    assert "ChordError" in json.dumps(result)
    # The callback never ran, and never will: the chord is FAILURE, naming the member.
    rows = project.query("SELECT state, failed_task_id FROM django_tasks_taskgroup")
    assert rows == [("FAILURE", member)]
    assert of(project, "tsum", "state = %s", ("SUCCESS",)) == 0
    drained(project, depth)


def moment(value: Any) -> dt.datetime:
    """A DateTimeField as read by the backend's driver (text on SQLite)."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def killed_workers_send_each_follow_up_once(project: Project, depth: Depth, tmp_path: Path,
                                            later: str, *, outbox: bool = False,
                                            dedup: bool = False, **env: str) -> int:
    """kill -9 in a loop while 300 linked tasks and a chord of 200 run: a task whose worker
    died before its settlement committed runs again and sends its follow-ups then; one
    whose settlement committed is never run again. The follow-ups go to a queue of their
    own, ``later``, that nobody consumes until the members are done, so that the queue
    counts what was sent: each callback once, the chord's callback once, every member
    counted once.

    With ``outbox`` (a broker outside the database, on SQLite), the follow-ups go through
    the outbox, and the check also counts the rows ever written there (each follow-up once)
    and what a killed worker left claimed there: a process killed between its claim and
    its delete (before or after the broker took the message) leaves the row to the relay
    once the claim runs out, 60 seconds later; the check runs the claims out at once
    instead. Returns how many of those rows the broker already held (published, then left
    claimed): sent again by the relay, and dropped there if the broker can ``dedup``."""
    journal = str(tmp_path / "journal")
    [callback] = project.shell(IMPORTS + (
        f"link = add.s(1).set(queue={later!r})\n"
        f"g = group(record.s({journal!r}, 0.02).set(link=link) for _ in range(300))\n"
        "g.apply_async()\n"
        f"c = chord((record.s({journal!r}, 0.02) for _ in range(200)),"
        f" tsum.s().set(queue={later!r})).apply_async()\n"
        "print(c.id)\n")).split()
    base = _outbox_rows_written(project) if outbox else 0
    kills = 0
    for n in range(5):  # a name each: wait_ready must not see the last one's row
        worker = project.worker("-c", "2", "-P", "prefork", hostname=f"e2e-killed-{n}", **env)
        project.wait_ready(worker)
        time.sleep(1.0)
        worker.kill()
        kills += 1
    stuck = [claim for (claim,) in project.query(
        "SELECT claim FROM django_tasks_outboxmessage WHERE claim IS NOT NULL")]
    project.worker("-c", "2", "-P", "prefork", hostname="e2e-last", **env)
    project.wait("the members", lambda: of(project, "record", "state = %s",
                                           ("SUCCESS",)) == 500, timeout=60)
    # Rows left unclaimed by a killed worker are the relay's after a grace of 10 seconds.
    project.wait("every follow-up published but those left claimed",
                 lambda: project.count("django_tasks_outboxmessage") == len(stuck),
                 timeout=30)
    time.sleep(1.0)  # anything sent twice would be queued by now
    starts = [line.split()[1] for line in Path(journal).read_text().splitlines()
              if line.startswith("S ")]
    assert len(set(starts)) == 500 and kills == 5
    assert len(starts) > 500, "no kill stopped a running task: the check proves nothing"
    assert project.query("SELECT size, done, state FROM django_tasks_taskgroup "
                         "WHERE callback_id = %s", (callback,)) == [(200, 200, "SUCCESS")]
    twice = 0
    if outbox:
        # Each follow-up written once: 300 callbacks and the chord's, whatever ran twice.
        assert _outbox_rows_written(project) - base == 301
        twice = depth(later) - (301 - len(stuck))  # those the broker holds already
        assert 0 <= twice <= len(stuck)
        project.query("UPDATE django_tasks_outboxmessage SET claimed_until = %s",
                      (project.timestamp(dt.datetime(2000, 1, 1, tzinfo=dt.UTC)),))
        project.wait("the relay to publish what was left claimed",
                     lambda: project.count("django_tasks_outboxmessage") == 0, timeout=10)
        time.sleep(1.0)
    # One message per linked task and one for the chord; a second copy only where the
    # broker cannot drop it (counted in ``twice``).
    assert depth(later) == 301 + (0 if dedup else twice)

    project.worker("-c", "2", "-P", "prefork", "-Q", later, hostname="e2e-follow-ups", **env)
    project.wait_state(callback, "SUCCESS", timeout=60)
    project.wait("the links' callbacks", lambda: of(project, "add", "state = %s",
                                                    ("SUCCESS",)) == 300, timeout=60)
    assert of(project, "add") == 300 and of(project, "tsum") == 1
    # No parent has two children.
    assert project.query(f"SELECT COUNT(*) FROM (SELECT parent_id FROM {RESULTS} "
                         "WHERE task_name = %s GROUP BY parent_id HAVING COUNT(*) > 1) AS d",
                         ("testproject.demo.tasks.add",)) == [(0,)]
    drained(project, depth, "default", later)
    return twice


def _outbox_rows_written(project: Project) -> int:
    """Rows ever committed to the outbox (SQLite's AUTOINCREMENT counter, which a rollback
    takes back)."""
    assert project.backend == "sqlite"
    rows = project.query("SELECT seq FROM sqlite_sequence WHERE name = %s",
                         ("django_tasks_outboxmessage",))
    return int(rows[0][0]) if rows else 0
