"""The pytest plugin of django_tasks (registered through the ``pytest11`` entry point).

It adds the ``task_queue`` fixture, a :class:`django_tasks.testing.TaskQueue` over the test
database (it uses pytest-django's ``db`` fixture).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .testing import TaskQueue


@pytest.fixture
def task_queue(db: None) -> Iterator[TaskQueue]:
    """Tasks queued by the test, run on demand by ``task_queue.run_pending()``."""
    from .testing import TaskQueue

    with TaskQueue() as queue:
        yield queue
