"""End to end: workflows run by a real worker on the database broker. ``link`` stores the
callback's result, a chain of ten returns the right value, a task is retried as it asks, a
group and a chord of a thousand complete (the chord counted in one row: no polling task, one
message per member and one for the callback), a chord with a failing member is FAILURE within
a second of that failure, and workers killed mid-run send each follow-up once. The checks are
in ``workflow_checks.py``, shared with Redis and RabbitMQ (``test_workflows_brokers.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from . import workflow_checks as check
from .conftest import Project

pytestmark = pytest.mark.e2e


def depth_of(project: Project) -> check.Depth:
    return lambda queue="default": project.count("django_tasks_queuedmessage", "queue = %s",
                                                 (queue,))


def test_link_chain_retries_and_parent_ids(project: Project) -> None:
    check.link_chain_and_retries(project, depth_of(project))


def test_a_group_and_a_chord_of_a_thousand_complete_without_polling(project: Project) -> None:
    check.a_group_and_a_chord_of_a_thousand(project, depth_of(project))


def test_a_chord_with_a_failing_member_fails_within_a_second(project: Project) -> None:
    check.a_failing_member_fails_the_chord_within_a_second(project, depth_of(project))


def test_killed_workers_send_each_follow_up_once(project: Project, tmp_path: Path) -> None:
    """A task whose worker died before its settlement committed runs again and sends its
    follow-ups then; one whose settlement committed is never run again. The follow-ups
    are written in the transaction that stores the outcome and acks."""
    check.killed_workers_send_each_follow_up_once(
        project, depth_of(project), tmp_path, "follow-ups", **check.SHORT_LEASE)
