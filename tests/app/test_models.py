"""The models: ordering, derived values, named queryset methods."""

from __future__ import annotations

import datetime as dt

import pytest

from django_tasks import states
from django_tasks.models import TaskResult

from .factories import make_message, make_result, make_worker, now

pytestmark = pytest.mark.django_db


def test_results_come_newest_first() -> None:
    base = now()
    for i, task_id in enumerate(["old", "middle", "new"]):
        make_result(task_id, created_at=base + dt.timedelta(minutes=i))
    assert list(TaskResult.objects.values_list("task_id", flat=True)) == ["new", "middle", "old"]


def test_runtime_is_seconds_from_start_to_done() -> None:
    assert make_result("a", runtime=2.25).runtime == pytest.approx(2.25)
    assert make_result("queued", states.PENDING, done_ago=None).runtime is None
    started = make_result("running", states.STARTED, done_ago=None)
    started.started_at = now()
    assert started.runtime is None


def test_ready_means_a_final_state() -> None:
    for state in states.ALL_STATES:
        make_result(state.lower(), state, done_ago=None if state in states.UNREADY_STATES else 0)
    ready = set(TaskResult.objects.ready().values_list("state", flat=True))
    assert ready == set(states.READY_STATES)


def test_done_before_keeps_unfinished_and_recent_results() -> None:
    make_result("old-success", done_ago=7200)
    make_result("old-failure", states.FAILURE, done_ago=7200)
    make_result("old-revoked", states.REVOKED, done_ago=7200)
    make_result("recent", done_ago=10)
    # A retrying task may carry a date_done of its last attempt: it is not finished.
    make_result("old-retry", states.RETRY, done_ago=7200)
    make_result("pending", states.PENDING, done_ago=None)
    cutoff = now() - dt.timedelta(hours=1)
    found = set(TaskResult.objects.done_before(cutoff).values_list("task_id", flat=True))
    assert found == {"old-success", "old-failure", "old-revoked"}


def test_string_forms_name_the_row() -> None:
    assert str(make_result("abc")) == "demo.add[abc] SUCCESS"
    assert str(make_message("m1")) == "default: m1"
    assert str(make_worker("w1@host")) == "w1@host"
