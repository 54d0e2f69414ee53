"""End to end: a task given bytes, datetime, date, time, Decimal and a UUID gets them as
themselves in a real worker, and ``AsyncResult.get()`` in another process returns them so;
the task's ``get_task_logger`` records show its name and id in the worker's log."""

from __future__ import annotations

import pytest

from .conftest import Project

pytestmark = pytest.mark.e2e

VALUES = ("{'blob': b'\\x89PNG\\x00\\xff', 'text': 'caf\\u00e9'.encode(), "
          "'when': dt.datetime(2026, 3, 29, 1, 30, 15, 250, tzinfo=dt.timezone.utc), "
          "'day': dt.date(2026, 2, 28), 'at': dt.time(23, 59, 58), "
          "'price': Decimal('19.990'), 'id': uuid.UUID(int=2**100 + 7)}")
SETUP = "import datetime as dt, uuid\nfrom decimal import Decimal\n"


def test_the_types_celerys_json_carries_round_trip_through_a_worker(project: Project) -> None:
    task_id = project.shell(SETUP + "from testproject.demo.tasks import echo_types\n"
                                    f"print(echo_types.delay({VALUES}).id)\n").strip()
    worker = project.worker("-c", "1", "-P", "prefork")
    project.wait_state(task_id, "SUCCESS")
    out = project.shell(SETUP + "from django_tasks import AsyncResult\n"
                                f"values = {VALUES}\n"
                                f"got = AsyncResult({task_id!r}).get(timeout=10)\n"
                                "print(got['value'] == values)\n"
                                "print({k: type(v) for k, v in got['value'].items()} == "
                                "{k: type(v) for k, v in values.items()})\n"
                                "print(sorted(got['types'].items()))\n"
                                "print(str(got['value']['price']))\n")
    assert out.splitlines() == [
        "True", "True",
        "[('at', 'time'), ('blob', 'bytes'), ('day', 'date'), ('id', 'UUID'), "
        "('price', 'Decimal'), ('text', 'bytes'), ('when', 'datetime')]",
        "19.990",
    ]
    project.wait("the task's log line", lambda: "echoing 7 values" in worker.output(), 10)
    line = next(li for li in worker.output().splitlines() if "echoing 7 values" in li)
    assert f"testproject.demo.tasks.echo_types[{task_id}]: echoing 7 values" in line
