"""The slots a consumer writes for its supervisor, in particular the one in shared memory
that a prefork child writes and its supervisor reads."""

from __future__ import annotations

import multiprocessing
import os
import warnings

import pytest

from django_tasks.worker.slots import RAN_CAPACITY, Running, SharedSlot, Slot

RUNNING = Running(17, 2**62, "id-1", "app.tasks.crunch", "default", 2, 1, 1700000000.5, 2.0,
                  12345.25)


@pytest.fixture(params=[Slot, SharedSlot])
def slot(request: pytest.FixtureRequest) -> Slot:
    return request.param()  # type: ignore[no-any-return]


def test_a_running_record_reads_back_whole(slot: Slot) -> None:
    assert slot.get() is None
    slot.set(RUNNING)
    assert slot.get() == RUNNING
    assert RUNNING.label == "app.tasks.crunch[id-1]"
    slot.clear()
    assert slot.get() is None


def test_ran_tags_accumulate_and_reset(slot: Slot) -> None:
    assert slot.ran_tags() == []
    slot.ran_add(5)
    slot.ran_add(9)
    assert slot.ran_tags() == [5, 9]
    slot.ran([3])
    assert slot.ran_tags() == [3]
    slot.reset()
    assert slot.ran_tags() == [] and slot.get() is None


def test_too_many_ran_tags_for_shared_memory_say_so() -> None:
    slot = SharedSlot()
    slot.ran(list(range(RAN_CAPACITY + 1)))
    assert slot.ran_tags() is None  # the supervisor then counts everything the child held
    slot.ran([])
    for tag in range(RAN_CAPACITY + 1):
        slot.ran_add(tag)
    assert slot.ran_tags() is None


def test_names_that_fill_the_columns_fit(slot: Slot) -> None:
    long = Running(1, 1, "é" * 255, "ü" * 255, "q" * 255, 1, 0, 0.0, 0.0, 0.0)
    slot.set(long)
    assert slot.get() == long


def test_progress_and_finished(slot: Slot) -> None:
    before = slot.progress
    slot.mark()
    assert slot.progress >= before
    slot.finished()
    assert slot.progress == float("inf")


def test_a_forked_child_writes_what_the_parent_reads() -> None:
    slot = SharedSlot()

    def child() -> None:
        slot.set(RUNNING)
        slot.ran_add(41)
        slot.ran_add(42)
        slot.finished()
        os._exit(0)

    process = multiprocessing.get_context("fork").Process(target=child)
    with warnings.catch_warnings():  # Python 3.12 warns of fork beside threads; none run here
        warnings.simplefilter("ignore", DeprecationWarning)
        process.start()
    process.join(10)
    assert process.exitcode == 0
    assert slot.get() == RUNNING
    assert slot.ran_tags() == [41, 42]
    assert slot.progress == float("inf")


# -- a batch's waiting deliveries: taken by the consumer or given back by the supervisor --

HELD = [(10, 100, 1), (11, 100, 1), (12, 100, 2)]


def test_what_the_consumer_takes_is_never_given_back(slot: Slot) -> None:
    slot.hold(HELD)
    assert slot.take(0)
    released: list[list[tuple[int, int, int]]] = []
    assert slot.give_back(released.append) == HELD[1:]
    assert released == [HELD[1:]]
    assert not slot.take(1) and not slot.take(2)  # given back: skipped
    assert slot.give_back(released.append) == []  # nothing is given back twice


def test_a_failed_release_leaves_the_deliveries_to_the_consumer(slot: Slot) -> None:
    slot.hold(HELD)

    def broken(held: object) -> None:
        raise ConnectionError("database away")

    with pytest.raises(ConnectionError):
        slot.give_back(broken)
    assert slot.take(0) and slot.take(1) and slot.take(2)


def test_the_rest_of_a_batch_is_taken_except_what_was_given_back(slot: Slot) -> None:
    slot.hold(HELD)
    assert slot.take(0)
    slot.give_back(lambda held: None)
    assert slot.take_rest(1, 3) == []
    slot.hold(HELD)
    assert slot.take(0)
    assert slot.take_rest(1, 5) == [1, 2, 3, 4]  # 3 and 4 were never listed
    assert slot.give_back(lambda held: None) == []


def test_a_new_batch_replaces_the_last(slot: Slot) -> None:
    slot.hold(HELD)
    slot.hold([(20, 7, 1)])
    assert slot.give_back(lambda held: None) == [(20, 7, 1)]
    slot.hold([])
    assert slot.give_back(lambda held: None) == []


def test_a_shared_slot_lists_at_most_its_capacity() -> None:
    from django_tasks.worker.slots import HELD_CAPACITY

    slot = SharedSlot()
    slot.hold([(i, 1, 1) for i in range(HELD_CAPACITY + 10)])
    assert len(slot.give_back(lambda held: None)) == HELD_CAPACITY
    assert slot.take(HELD_CAPACITY + 5)  # not listed: the consumer's own


def test_a_busy_lock_gives_nothing_back(slot: Slot) -> None:
    slot.hold(HELD)
    with slot._lock:
        assert slot.give_back(lambda held: None, timeout=0.01) == []
    assert slot.take(0)


def test_a_forked_child_and_its_supervisor_agree_on_what_was_given_back() -> None:
    slot = SharedSlot()
    slot.hold(HELD)
    assert slot.give_back(lambda held: None) == HELD  # the supervisor, in the parent

    def child() -> None:
        os._exit(0 if [slot.take(i) for i in range(3)] == [False] * 3 else 1)

    process = multiprocessing.get_context("fork").Process(target=child)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        process.start()
    process.join(10)
    assert process.exitcode == 0


def test_the_next_batch_is_listed_behind_the_batch_and_given_back_with_it(slot: Slot) -> None:
    slot.hold(HELD, ["a", "b", "c"])
    assert slot.take(0)
    assert slot.extend([(30, 5, 1), (31, 5, 2)], ["d", "e"]) == 3
    assert slot.reserved() == ["b", "c", "d", "e"]
    assert slot.give_back(lambda held: None) == [*HELD[1:], (30, 5, 1), (31, 5, 2)]
    assert slot.take_rest(3, 5) == []  # the consumer keeps none of the next batch
    slot.hold([(40, 1, 1)])  # the next batch, listed afresh, is all waiting
    assert slot.extend([(41, 1, 1)]) == 1
    assert slot.take_rest(1, 2) == [1]
    assert slot.give_back(lambda held: None) == [(40, 1, 1)]


def test_a_shared_slot_lists_what_fits_of_the_next_batch() -> None:
    from django_tasks.worker.slots import HELD_CAPACITY

    slot = SharedSlot()
    slot.hold([(i, 1, 1) for i in range(HELD_CAPACITY - 2)])
    start = slot.extend([(1000 + i, 1, 1) for i in range(5)], [f"n{i}" for i in range(5)])
    assert start == HELD_CAPACITY - 2
    assert slot.reserved()[-2:] == ["n0", "n1"]
    assert len(slot.give_back(lambda held: None)) == HELD_CAPACITY
    assert slot.take_rest(start, start + 5) == [start + 2, start + 3, start + 4]  # unlisted
