"""``manage.py taskprune`` and the function behind it."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from django_tasks import states
from django_tasks.models import TaskResult
from django_tasks.results.database import DatabaseResultStore
from django_tasks.results.memory import MemoryResultStore
from django_tasks.results.prune import prune_expired

from .factories import make_result

pytestmark = pytest.mark.django_db


def prune(*args: str) -> str:
    out = io.StringIO()
    call_command("taskprune", *args, stdout=out)
    return out.getvalue()


def remaining() -> set[str]:
    return set(TaskResult.objects.values_list("task_id", flat=True))


@pytest.fixture
def old_and_new() -> None:
    """Five finished results two hours old, and results that must stay."""
    for i, state in enumerate([states.SUCCESS] * 3 + [states.FAILURE, states.REVOKED]):
        make_result(f"old-{i}", state, done_ago=7200)
    make_result("new", done_ago=10)
    make_result("running", states.STARTED, done_ago=None,
                created_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=3))
    make_result("queued", states.PENDING, done_ago=None,
                created_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=3))


KEPT = {"new", "running", "queued"}


@override_settings(TASKS_RESULT_EXPIRES=dt.timedelta(hours=1))
def test_deletes_only_expired_finished_results(old_and_new: None) -> None:
    out = prune()
    assert "Deleted 5 results finished before" in out and "in 1 batch of at most 1000" in out
    assert remaining() == KEPT


@override_settings(TASKS_RESULT_EXPIRES=dt.timedelta(hours=1), TASKS_PRUNE_BATCH_SIZE=1000)
def test_small_batches_still_delete_every_expired_row(old_and_new: None) -> None:
    out = prune("--batch-size", "2", "-v", "2")
    # 2 + 2 + 1: the short batch ends the loop.
    assert out.count("deleted a batch of") == 3 and "in 3 batches of at most 2" in out
    assert remaining() == KEPT


@override_settings(TASKS_RESULT_EXPIRES=dt.timedelta(hours=1), TASKS_PRUNE_BATCH_SIZE=5)
def test_batch_size_comes_from_settings(old_and_new: None) -> None:
    # A full batch of 5 asks once more and gets 0.
    assert "Deleted 5 results" in prune() and remaining() == KEPT
    report = prune_expired()
    assert (report.count, report.batches, report.batch_size) == (0, 1, 5)


def test_each_batch_is_bounded(old_and_new: None, monkeypatch: pytest.MonkeyPatch) -> None:
    sizes: list[int] = []
    original = DatabaseResultStore.prune

    def spy(self: DatabaseResultStore, before: dt.datetime, batch_size: int) -> int:
        deleted = original(self, before, batch_size)
        sizes.append(deleted)
        assert deleted <= batch_size
        return deleted

    monkeypatch.setattr(DatabaseResultStore, "prune", spy)
    prune("--batch-size", "2", "--older-than", "3600")
    assert sizes == [2, 2, 1]


@override_settings(TASKS_RESULT_EXPIRES=dt.timedelta(hours=1))
def test_dry_run_counts_and_deletes_nothing(old_and_new: None) -> None:
    out = prune("--dry-run")
    assert "Would delete 5 results" in out and "dry run" in out
    assert len(remaining()) == 8


@override_settings(TASKS_RESULT_EXPIRES=None)
def test_none_means_results_never_expire(old_and_new: None) -> None:
    assert "never expire" in prune()
    assert len(remaining()) == 8
    assert "Deleted 6 results" in prune("--older-than", "5")  # an explicit age still prunes
    assert remaining() == {"running", "queued"}


@override_settings(TASKS_RESULT_EXPIRES=3600)
def test_expiry_may_be_given_in_seconds(old_and_new: None) -> None:
    assert "Deleted 5 results" in prune()


def test_older_than_overrides_the_setting(old_and_new: None) -> None:
    assert "Deleted 0 results" in prune("--older-than", "86400")
    assert "Deleted 5 results" in prune("--older-than", "3600")
    out = io.StringIO()
    call_command("taskprune", older_than=1, stdout=out)  # from code, in seconds
    assert "Deleted 1 result finished" in out.getvalue()


@pytest.mark.parametrize("args", [["--batch-size", "0"], ["--older-than", "-1"],
                                  ["--older-than", "nan"], ["--older-than", "1e300"]])
def test_bad_arguments_are_refused(args: list[str]) -> None:
    with pytest.raises(CommandError):
        prune(*args)


@override_settings(TASKS_PRUNE_BATCH_SIZE=0)
def test_a_bad_batch_size_setting_is_named() -> None:
    with pytest.raises(CommandError, match="TASKS_PRUNE_BATCH_SIZE"):
        prune()


@override_settings(TASKS_RESULT_BACKEND=None)
def test_without_a_result_store_there_is_nothing_to_prune() -> None:
    with pytest.raises(CommandError, match="TASKS_RESULT_BACKEND is None"):
        prune()


def test_prune_expired_works_on_any_result_store() -> None:
    store = MemoryResultStore()
    report = prune_expired(store=store, older_than=dt.timedelta(0), batch_size=3)
    assert (report.count, report.batches) == (0, 1)
    with pytest.raises(Exception, match="cannot count expired results"):
        prune_expired(store=store, older_than=dt.timedelta(0), dry_run=True)
