"""End to end: workflows run by a real worker on the database broker. ``link`` stores the
callback's result, a chain of ten returns the right value, a group and a chord of a
thousand complete (the chord counted in one row: no polling task, one message per member
and one for the callback), and a chord with a failing member is FAILURE within a second of
that failure."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import pytest

from .conftest import Project

pytestmark = pytest.mark.e2e

IMPORTS = ("from django_tasks import AsyncResult, GroupResult, chain, chord, group\n"
           "from testproject.demo.tasks import add, multiply, tsum, fail\n")


def test_link_chain_and_parent_ids(project: Project) -> None:
    out = project.shell(IMPORTS + (
        "linked = add.apply_async((2, 2), link=multiply.s(3))\n"
        "flow = chain(add.s(1, 1), *[add.s(1) for _ in range(9)]).apply_async()\n"
        "print(linked.id)\nprint(flow.id)\n")).split()
    linked, flow = out
    project.worker("-c", "2", "-P", "prefork")
    project.wait_state(flow, "SUCCESS", timeout=60)
    out = project.shell(IMPORTS + (
        f"linked = AsyncResult({linked!r})\n"
        "print(linked.get(timeout=30), [c.get(timeout=30) for c in linked.children])\n"
        f"flow = AsyncResult({flow!r})\n"
        "print(flow.get(timeout=30), flow.parent.get(timeout=30))\n"))
    assert out.splitlines() == ["4 [12]", "11 10"]
    rows = project.query("SELECT COUNT(*), COUNT(DISTINCT root_id) FROM django_tasks_taskresult "
                         "WHERE task_name = %s", ("testproject.demo.tasks.add",))
    assert rows == [(11, 2)]  # the chain's ten share a root; the linked task is its own


def test_a_group_and_a_chord_of_a_thousand_complete_without_polling(project: Project) -> None:
    out = project.shell(IMPORTS + (
        "g = group(add.s(i, i) for i in range(1000)).apply_async()\n"
        "g.save()\n"
        "c = chord((add.s(i, 1) for i in range(1000)), tsum.s()).apply_async()\n"
        "print(g.id)\nprint(c.id)\n")).split()
    group_id, callback = out
    assert project.count("django_tasks_queuedmessage") == 2000
    project.worker("-c", "2", "-P", "prefork")
    project.wait_state(callback, "SUCCESS", timeout=120)
    out = project.shell(IMPORTS + (
        f"g = GroupResult.restore({group_id!r})\n"
        "print(g.completed_count(), g.get(timeout=60) == [i + i for i in range(1000)])\n"
        f"print(AsyncResult({callback!r}).get(timeout=10))\n"))
    assert out.splitlines() == ["1000 True", str(sum(i + 1 for i in range(1000)))]
    # One message per member and one for the callback, nothing that polls: every message had
    # a result row, and there are exactly that many.
    assert project.count("django_tasks_taskresult") == 2001
    assert project.count("django_tasks_taskresult", "task_name = %s",
                         ("testproject.demo.tasks.tsum",)) == 1
    # The chord is one counter row, counted up to its size.
    rows = project.query("SELECT size, done, state FROM django_tasks_taskgroup "
                         "WHERE callback_id = %s", (callback,))
    assert rows == [(1000, 1000, "SUCCESS")]


def test_a_chord_with_a_failing_member_fails_within_a_second(project: Project) -> None:
    out = project.shell(IMPORTS + (
        "header = [add.s(i, i) for i in range(50)] + [fail.si('member failed')]\n"
        "c = chord(header, tsum.s()).apply_async()\n"
        "print(c.id)\nprint(c.parent.results[-1].id)\n")).split()
    callback, member = out
    project.worker("-c", "2", "-P", "prefork")
    project.wait_state(callback, "FAILURE", timeout=60)
    done = dict(project.query(
        "SELECT task_id, date_done FROM django_tasks_taskresult WHERE task_id IN (%s, %s)",
        (callback, member)))
    assert project.state(member) == "FAILURE"
    lag = (_moment(done[callback]) - _moment(done[member])).total_seconds()
    assert 0 <= lag < 1.0
    result = project.result(callback)
    assert result is not None and member in json.dumps(result)
    assert "ChordError" in json.dumps(result)
    # The callback never ran, and never will: the chord is FAILURE, naming the member.
    rows = project.query("SELECT state, failed_task_id FROM django_tasks_taskgroup")
    assert rows == [("FAILURE", member)]
    assert project.count("django_tasks_taskresult", "task_name = %s AND state = %s",
                         ("testproject.demo.tasks.tsum", "SUCCESS")) == 0


def _moment(value: Any) -> dt.datetime:
    """A DateTimeField as read by the backend's driver (text on SQLite)."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def test_killed_workers_send_each_follow_up_once(project: Project, tmp_path: Path) -> None:
    """kill -9 in a loop while links and a chord run: a task whose worker died before its
    settlement committed runs again and sends its follow-ups then; one whose settlement
    committed is never run again. Either way each callback is queued once, and the chord's
    callback runs once, with every member counted once."""
    journal = str(tmp_path / "journal")
    out = project.shell(
        "from django_tasks import chord, group\n"
        "from testproject.demo.tasks import add, record, tsum\n"
        f"g = group(record.s({journal!r}, 0.02).set(link=add.s(1)) for _ in range(300))\n"
        "g.apply_async()\n"
        f"c = chord((record.s({journal!r}, 0.02) for _ in range(200)), tsum.s())"
        ".apply_async()\n"
        "print(c.id)\n").split()
    [callback] = out
    short = {"TASKS_LEASE_SECONDS": "3", "TASKS_HEARTBEAT_SECONDS": "1"}
    kills = 0
    for _ in range(5):
        worker = project.worker("-c", "2", "-P", "prefork", hostname="e2e-killed", **short)
        project.wait_ready(worker)
        time.sleep(1.0)
        worker.kill()
        kills += 1
    project.worker("-c", "2", "-P", "prefork", hostname="e2e-last", **short)
    project.wait_state(callback, "SUCCESS", timeout=120)
    project.wait("the links' callbacks", lambda: project.count(
        "django_tasks_taskresult", "task_name = %s AND state = %s",
        ("testproject.demo.tasks.add", "SUCCESS")) >= 300, timeout=120)
    time.sleep(1.0)  # anything sent twice would be queued by now
    starts = [line.split()[1] for line in Path(journal).read_text().splitlines()
              if line.startswith("S ")]
    assert len(set(starts)) == 500 and kills == 5
    # One callback per linked task, whatever ran twice: no parent has two children.
    assert project.count("django_tasks_taskresult", "task_name = %s",
                         ("testproject.demo.tasks.add",)) == 300
    assert project.query("SELECT COUNT(*) FROM (SELECT parent_id FROM django_tasks_taskresult "
                         "WHERE task_name = %s GROUP BY parent_id HAVING COUNT(*) > 1) AS d",
                         ("testproject.demo.tasks.add",)) == [(0,)]
    assert project.count("django_tasks_taskresult", "task_name = %s",
                         ("testproject.demo.tasks.tsum",)) == 1
    assert project.query("SELECT size, done, state FROM django_tasks_taskgroup "
                         "WHERE callback_id = %s", (callback,)) == [(200, 200, "SUCCESS")]
    assert project.count("django_tasks_queuedmessage") == 0
