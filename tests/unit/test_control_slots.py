"""What the control channel reads from the slots: the held batch's task ids, the totals,
and which running task is being terminated; the same in a plain and a shared slot."""

from __future__ import annotations

import time

import pytest

from django_tasks.worker.slots import Running, SharedSlot, Slot


def running(tag: int = 7) -> Running:
    return Running(tag, 1, "t-running", "shop.charge", "default", 1, 0, time.time(), 0, 0)


@pytest.fixture(params=["plain", "shared"])
def slot(request: pytest.FixtureRequest) -> Slot:
    return Slot() if request.param == "plain" else SharedSlot()


def test_reserved_lists_the_batch_waiting_to_start(slot: Slot) -> None:
    slot.hold([(1, 1, 1), (2, 1, 1), (3, 1, 1)], ["a", "b", "c"])
    assert slot.reserved() == ["a", "b", "c"]
    assert slot.take(0)
    assert slot.reserved() == ["b", "c"]
    slot.hold([(4, 1, 1)])  # a batch without ids: nothing named
    assert slot.reserved() == []
    slot.hold([])
    assert slot.reserved() == []


def test_totals_count_runs_and_failures(slot: Slot) -> None:
    slot.count(failed=False)
    slot.count(failed=True)
    slot.count(failed=False)
    assert slot.totals() == (3, 1)


def test_revoking_names_only_the_running_task(slot: Slot) -> None:
    assert not slot.revoking()
    slot.set(running(7))
    slot.revoke_running(8)
    assert not slot.revoking()
    slot.revoke_running(7)
    assert slot.revoking()
    slot.clear()
    assert not slot.revoking()
    slot.reset()
    slot.set(running(7))
    assert not slot.revoking()  # a new consumer in the slot starts clean
