"""Workflows on the memory broker and store, run through the worker's consumer: signatures,
link and link_error, chains, groups and chords (counted, never polled), eager mode."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import override_settings

from django_tasks import (
    AsyncResult,
    ChordError,
    GroupResult,
    Signature,
    chain,
    chord,
    group,
    serialization,
    shared_task,
    signature,
    states,
)
from django_tasks.conf import get_broker, get_result_store
from django_tasks.message import Message
from django_tasks.results.workflows import workflows
from django_tasks.worker.consumer import Consumer

calls: list[Any] = []


@shared_task(name="unit.canvas.add")
def add(x: int, y: int) -> int:
    return x + y


@shared_task(name="unit.canvas.mul")
def mul(x: int, y: int) -> int:
    return x * y


@shared_task(name="unit.canvas.tsum")
def tsum(values: list[int]) -> int:
    return sum(values)


@shared_task(name="unit.canvas.boom")
def boom(*args: Any) -> None:
    raise ValueError("boom")


@shared_task(name="unit.canvas.record")
def record(*args: Any) -> None:
    calls.append(args)


@pytest.fixture(autouse=True)
def _memory(memory_tasks: None) -> Iterator[None]:
    calls.clear()
    yield


def consumer() -> Consumer:
    return Consumer(queues=["default", "other"], owner="test/1", hostname="test@host",
                    prefetch=100, lease=30, stop=threading.Event())


def drain(rounds: int = 50) -> int:
    """Run what is queued, and what that queues, until nothing is left; the deliveries."""
    c, ran = consumer(), 0
    for _ in range(rounds):
        batch = get_broker().fetch(["default", "other"], c.owner, 100, 30)
        if not batch:
            return ran
        ran += len(batch)
        c.process(batch)
    return ran


def queued() -> list[Message]:
    return [Message.decode(d.body) for d in get_broker().fetch(["default"], "peek", 1000, 30)]


# -- signatures ------------------------------------------------------------------------


def test_a_signature_is_celerys_dict_and_survives_json() -> None:
    sig = add.s(2).set(queue="other", countdown=5)
    assert dict(sig) == {"task": "unit.canvas.add", "args": [2], "kwargs": {},
                         "options": {"queue": "other", "countdown": 5},
                         "subtask_type": None, "immutable": False, "chord_size": None}
    back = signature(serialization.loads(serialization.dumps(sig)))
    assert isinstance(back, Signature) and back == sig
    assert back.args == (2,) and back.options["queue"] == "other"
    assert repr(add.si(1, y=2)) == "%unit.canvas.add(1, y=2)"


def test_partial_arguments_go_after_the_ones_given_and_immutable_ignores_them() -> None:
    assert add.s(2).clone((3,)).args == (3, 2)
    assert add.si(2, 2).clone((3,)).args == (2, 2)
    assert signature("unit.canvas.add", (1,), {"y": 2}, countdown=1).options == {"countdown": 1}
    assert add.s(1, 2)() == 3


def test_a_chain_group_and_chord_round_trip_as_json() -> None:
    flow = chain(add.s(1, 1), group(add.s(i) for i in range(3)), tsum.s())
    back = signature(serialization.loads(serialization.dumps(flow)))
    assert isinstance(back, chain) and [type(t) for t in back.tasks] == [Signature, group,
                                                                          Signature]
    c = chord([add.s(1, 1)], tsum.s())
    again = signature(serialization.loads(serialization.dumps(c)))
    assert isinstance(again, chord) and again.body == tsum.s()
    assert isinstance(add.s(1, 1) | mul.s(2), chain)
    assert isinstance(group(add.s(1, 1)) | tsum.s(), chord)


def test_signature_delay_queues_the_task() -> None:
    result = add.s(2).delay(3)
    assert [(m.task, m.args) for m in queued()] == [("unit.canvas.add", (3, 2))]
    assert isinstance(result, AsyncResult)


# -- link and link_error -----------------------------------------------------------------


def test_link_stores_the_callbacks_result() -> None:
    parent = add.apply_async((2, 2), link=mul.s(3))
    drain()
    assert parent.get() == 4
    [child] = parent.children
    assert child.get() == 12
    assert child.parent == parent
    meta = get_result_store().get(child.id)  # type: ignore[union-attr]
    assert meta is not None and meta.parent_id == parent.id and meta.root_id == parent.id


def test_link_error_gets_the_failed_tasks_id_and_link_does_not_run() -> None:
    failed = boom.apply_async((), link=record.s("ok"), link_error=record.s("failed"))
    drain()
    assert failed.state == states.FAILURE
    assert calls == [(failed.id, "failed")]


def test_link_as_a_signature_option() -> None:
    sig = add.s(1, 1)
    sig.link(mul.s(10))
    sig.link_error(record.si("never"))
    result = sig.apply_async()
    drain()
    assert [c.get() for c in result.children] == [20] and calls == []


def test_a_callback_whose_arguments_do_not_fit_is_a_failure_not_a_broken_worker() -> None:
    cb = add.s(1, 2).freeze()
    source = add.s(1, 1)
    source.link(Signature.from_dict(dict(add.s(1, 2), options={"task_id": cb.id})))
    result = source.apply_async()
    drain()
    assert result.get() == 2
    assert cb.state == states.FAILURE


# -- chains -------------------------------------------------------------------------------


def test_a_chain_of_ten_passes_each_result_on() -> None:
    flow = chain(add.s(1, 1), *[add.s(1) for _ in range(9)])
    result = flow.apply_async()
    drain()
    assert result.get() == 11
    assert result.parent is not None and result.parent.get() == 10
    first = result
    while first.parent is not None:
        first = first.parent
    assert first.get() == 2
    meta = get_result_store().get(result.id)  # type: ignore[union-attr]
    assert meta is not None and meta.root_id == first.id


def test_a_chain_stops_at_a_failure_and_its_errback_runs() -> None:
    flow = (add.s(1, 1) | boom.s() | record.s("after")).on_error(record.s("error"))
    result = flow.apply_async()
    drain()
    assert calls and calls[0][1] == "error" and len(calls) == 1
    assert result.state == states.PENDING


def test_a_chain_options_go_to_its_first_task() -> None:
    (add.s(1, 1) | mul.s(2)).apply_async(queue="other")
    [first] = [Message.decode(d.body) for d in get_broker().fetch(["other"], "x", 10, 30)]
    assert first.task == "unit.canvas.add" and len(first.chain) == 1


# -- groups ---------------------------------------------------------------------------------


def test_a_group_is_published_in_one_batch_with_its_results() -> None:
    result = group(add.s(i, i) for i in range(20)).apply_async()
    assert isinstance(result, GroupResult) and len(result) == 20
    messages = queued()
    assert {m.group for m in messages} == {result.id}
    assert [m.id for m in messages] == [r.id for r in result]
    assert result.completed_count() == 0 and not result.ready()


def test_a_group_completes_and_its_result_reads_in_order() -> None:
    result = group([add.s(i, i) for i in range(10)]).apply_async()
    drain()
    assert result.ready() and result.successful() and not result.failed()
    assert result.completed_count() == 10
    assert result.get(timeout=1) == [i + i for i in range(10)]


def test_a_group_result_is_saved_and_restored() -> None:
    result = group(add.s(1, 1), boom.s()).apply_async()
    result.save()
    drain()
    again = GroupResult.restore(result.id)
    assert again is not None and [r.id for r in again] == [r.id for r in result]
    assert again.failed() and again.completed_count() == 1
    with pytest.raises(ValueError):
        again.get(timeout=1)
    assert again.get(timeout=1, propagate=False)[0] == 2
    again.delete()
    assert GroupResult.restore(result.id) is None


def test_a_group_gets_the_chains_result() -> None:
    result = (add.s(1, 1) | group(add.s(1), add.s(2))).apply_async()
    drain()
    assert result.get(timeout=1) == [3, 4]


# -- chords -------------------------------------------------------------------------------


def test_a_chord_calls_back_once_with_results_in_order() -> None:
    result = chord([add.s(i, i) for i in range(10)], tsum.s()).apply_async()
    drain()
    assert result.get(timeout=1) == sum(i + i for i in range(10))
    assert isinstance(result.parent, GroupResult)
    assert result.parent.get(timeout=1) == [i + i for i in range(10)]
    [row] = workflows(get_result_store()).__dict__["groups"].values()  # memory: one counter
    assert row.done == 10 and row.state == states.SUCCESS


def test_a_chord_is_counted_not_polled() -> None:
    result = chord([add.s(i, i) for i in range(50)], tsum.s()).apply_async()
    assert drain() == 51  # the members and the callback; nothing else was queued
    assert result.get(timeout=1) == sum(i + i for i in range(50))


def test_a_failed_member_fails_the_chord_naming_it_and_runs_its_errback() -> None:
    callback = tsum.s().on_error(record.s("chord failed"))
    header = [add.s(1, 1), boom.s(), add.s(2, 2)]
    result = chord(header, callback).apply_async()
    drain()
    assert result.state == states.FAILURE
    failed_id = result.parent.results[1].id  # type: ignore[union-attr]
    with pytest.raises(ChordError, match=failed_id):
        result.get(timeout=1)
    assert calls == [(result.id, "chord failed")]


def test_chord_called_with_a_callback_and_an_empty_chord() -> None:
    result = chord(add.s(i, 1) for i in range(3))(tsum.s())
    empty = chord([], tsum.s()).apply_async()
    drain()
    assert result.get(timeout=1) == 6 and empty.get(timeout=1) == 0


def test_a_chain_through_a_chord_goes_on_after_its_callback() -> None:
    flow = add.s(1, 1) | group(add.s(1), add.s(2)) | tsum.s() | mul.s(10)
    result = flow.apply_async()
    drain()
    assert result.get(timeout=1) == 70


def test_a_chord_of_chains_counts_each_chains_last_task() -> None:
    result = chord([add.s(1, 1) | mul.s(10), add.s(2, 2) | mul.s(10)], tsum.s()).apply_async()
    drain()
    assert result.get(timeout=1) == 60


def test_chords_need_a_result_store() -> None:
    from django_tasks.exceptions import ResultBackendDisabled

    with override_settings(TASKS_RESULT_BACKEND=None), pytest.raises(ResultBackendDisabled):
        chord([add.s(1, 1)], tsum.s()).apply_async()


# -- eager mode ----------------------------------------------------------------------------


@pytest.mark.usefixtures("eager")
def test_eager_mode_runs_workflows_here_in_order() -> None:
    assert add.apply_async((2, 2), link=mul.s(3)).get() == 4
    assert chain(add.s(1, 1), *[add.s(1) for _ in range(9)]).apply_async().get() == 11
    assert group(add.s(i, i) for i in range(5)).apply_async().get() == [0, 2, 4, 6, 8]
    assert chord([add.s(i, i) for i in range(5)], tsum.s()).apply_async().get() == 20
    assert (add.s(1, 1) | group(add.s(1), add.s(2)) | tsum.s()).apply_async().get() == 7
    assert queued() == []


def test_apply_runs_a_workflow_here() -> None:
    assert (add.s(1, 1) | mul.s(5)).apply().get() == 10
    assert queued() == []


@pytest.mark.usefixtures("eager")
def test_eager_mode_without_a_result_store_still_runs_a_chord() -> None:
    with override_settings(TASKS_RESULT_BACKEND=None):
        chord([add.s(1, 1), add.s(2, 2)], record.s("sum")).apply_async()
    assert calls == [([2, 4], "sum")]


def test_a_member_revoked_or_expired_before_it_ran_fails_the_chord() -> None:
    revoked = chord([add.s(1, 1), add.s(2, 2)], tsum.s()).apply_async()
    revoked.parent.results[0].revoke()  # type: ignore[union-attr]
    expired = chord([add.s(1, 1).set(expires=-1), add.s(2, 2)], tsum.s()).apply_async()
    drain()
    for result in (revoked, expired):
        assert result.state == states.FAILURE
        with pytest.raises(ChordError, match=result.parent.results[0].id):  # type: ignore[union-attr]
            result.get(timeout=1)


def test_a_chords_link_and_link_error_belong_to_its_body() -> None:
    ok = chord([add.s(1, 1)], tsum.s())
    ok.link(record.s("after"))
    bad = chord([boom.s()], tsum.s()).on_error(record.s("failed"))
    done, failed = ok.apply_async(), bad.apply_async()
    drain()
    assert done.get(timeout=1) == 2 and failed.state == states.FAILURE
    assert sorted(calls, key=str) == sorted([(2, "after"), (failed.id, "failed")], key=str)


def test_chords_as_members_of_a_group() -> None:
    result = group(chord([add.s(1, 1), add.s(2, 2)], tsum.s()),
                   chord([add.s(3, 3)], tsum.s()), add.s(5, 5)).apply_async()
    drain()
    assert result.get(timeout=1) == [6, 6, 10]
