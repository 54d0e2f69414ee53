"""A suspect (delivered before, never settled) runs alone among a process's consumer threads."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from django_tasks import shared_task
from django_tasks.conf import get_broker
from django_tasks.result import AsyncResult
from django_tasks.task import build_message
from django_tasks.worker.alone import Alone
from django_tasks.worker.consumer import Consumer

events: list[str] = []
_lock = threading.Lock()


def note(event: str) -> None:
    with _lock:
        events.append(event)


@pytest.fixture(autouse=True)
def _memory(memory_tasks: None) -> None:
    events.clear()


def in_thread(target: Callable[[], object]) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def wait_for(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_a_suspect_waits_for_the_running_task_and_nothing_starts_beside_it() -> None:
    alone = Alone(seconds=30)
    release_ordinary, release_suspect = threading.Event(), threading.Event()

    def ordinary(name: str, release: threading.Event | None) -> Callable[[], None]:
        def run() -> None:
            with alone.beside():
                note(f"{name} starts")
                if release is not None:
                    release.wait(5)
                note(f"{name} ends")
        return run

    def suspect() -> None:
        with alone.alone():
            note("suspect starts")
            release_suspect.wait(5)
            note("suspect ends")

    first = in_thread(ordinary("first", release_ordinary))
    wait_for(lambda: events == ["first starts"])
    waiting = in_thread(suspect)
    wait_for(lambda: alone.state() == (1, 1, 0))  # the suspect waits for the first
    later = in_thread(ordinary("later", None))
    time.sleep(0.05)
    assert events == ["first starts"]  # the later task waits behind the suspect
    release_ordinary.set()
    wait_for(lambda: "suspect starts" in events)
    time.sleep(0.05)
    assert events == ["first starts", "first ends", "suspect starts"]
    release_suspect.set()
    for thread in (first, waiting, later):
        thread.join(5)
    assert events[3:] == ["suspect ends", "later starts", "later ends"]
    assert alone.state() == (0, 0, 0)


def test_two_suspects_run_one_after_the_other() -> None:
    alone = Alone(seconds=30)
    gates = [threading.Event(), threading.Event()]

    def suspect(index: int) -> Callable[[], None]:
        def run() -> None:
            with alone.alone():
                note(f"{index} starts")
                gates[index].wait(5)
                note(f"{index} ends")
        return run

    first = in_thread(suspect(0))
    wait_for(lambda: events == ["0 starts"])
    second = in_thread(suspect(1))
    wait_for(lambda: alone.state() == (0, 2, 1))
    gates[0].set()
    gates[1].set()
    first.join(5)
    second.join(5)
    assert events == ["0 starts", "0 ends", "1 starts", "1 ends"]


def test_the_waits_are_bounded_so_long_tasks_on_either_side_hold_nothing_for_long() -> None:
    alone = Alone(seconds=0.2)
    release = threading.Event()

    def long_ordinary() -> None:
        with alone.beside():
            note("long starts")
            release.wait(5)

    def long_suspect() -> None:
        with alone.alone():
            note("suspect starts")
            release.wait(5)

    in_thread(long_ordinary)
    wait_for(lambda: events == ["long starts"])
    began = time.monotonic()
    in_thread(long_suspect)
    wait_for(lambda: "suspect starts" in events)  # after 0.2 s, beside the long task
    assert time.monotonic() - began >= 0.15
    began = time.monotonic()
    with alone.beside():  # 0.2 s after the suspect started, others run again
        assert time.monotonic() - began >= 0.1
        assert alone.state() == (2, 1, 1)
    with alone.beside():  # and go on doing so without waiting again
        pass
    assert time.monotonic() - began < 0.4
    release.set()


@shared_task(name="unit.alone.record")
def record(name: str, hold: float) -> None:
    note(f"{name} starts")
    time.sleep(hold)
    note(f"{name} ends")


def test_consumer_threads_run_a_redelivered_message_alone() -> None:
    """Two consumers of one process share an Alone: the message delivered before starts
    after the task running in the other thread ends, and nothing starts beside it."""
    alone = Alone(seconds=30)
    broker = get_broker()

    def consumer(owner: str) -> Consumer:
        return Consumer(queues=["default"], owner=owner, hostname="test@host", prefetch=1,
                        lease=30, stop=threading.Event(), alone=alone)

    broker.publish([build_message("unit.alone.record", ("ordinary", 0.3), {})])
    [ordinary] = broker.fetch(["default"], "test/t0", 1, 30)
    broker.publish([build_message("unit.alone.record", ("suspect", 0.1), {})])
    broker.release(broker.fetch(["default"], "dead", 1, 30), count=True)  # its holder died
    [suspect] = broker.fetch(["default"], "test/t1", 1, 30)
    assert suspect.deliveries == 2
    broker.publish([build_message("unit.alone.record", ("after", 0.0), {})])
    [after] = broker.fetch(["default"], "test/t2", 1, 30)
    threads = [in_thread(lambda: consumer("test/t0").process([ordinary]))]
    wait_for(lambda: events == ["ordinary starts"])
    threads.append(in_thread(lambda: consumer("test/t1").process([suspect])))
    wait_for(lambda: alone.state()[1] == 1)
    threads.append(in_thread(lambda: consumer("test/t2").process([after])))
    for thread in threads:
        thread.join(5)
    assert events == ["ordinary starts", "ordinary ends", "suspect starts", "suspect ends",
                      "after starts", "after ends"]
    assert broker.depths(["default"]) == {"default": 0}


@shared_task(name="unit.alone.look")
def look(task_id: str) -> None:
    note(f"the first is {AsyncResult(task_id).state}")


def test_a_suspects_outcome_is_written_before_the_next_suspect_starts(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """If the next suspect is a poison that ends the process, the one that ran before it
    must not be lost with it: its outcome is written while it still runs alone (here the
    write is made slow, so that the next one would start before it without that)."""
    alone = Alone(seconds=30)
    broker = get_broker()
    flush = Consumer._flush

    def slow_flush(self: Consumer, pending: list) -> None:  # type: ignore[type-arg]
        if pending:
            time.sleep(0.2)
        flush(self, pending)

    monkeypatch.setattr(Consumer, "_flush", slow_flush)
    first = build_message("unit.alone.record", ("first", 0.0), {})
    second = build_message("unit.alone.look", (first.id,), {})
    suspects = []
    for message in (first, second):  # each comes back after its holder died
        broker.publish([message])
        broker.release(broker.fetch(["default"], "dead", 1, 30), count=True)
        suspects += broker.fetch(["default"], f"test/t{len(suspects)}", 1, 30)
    assert [d.deliveries for d in suspects] == [2, 2]

    def consumer(owner: str) -> Consumer:
        return Consumer(queues=["default"], owner=owner, hostname="test@host", prefetch=1,
                        lease=30, stop=threading.Event(), alone=alone)

    threads = [in_thread(lambda: consumer("test/t0").process([suspects[0]]))]
    wait_for(lambda: "first ends" in events)
    threads.append(in_thread(lambda: consumer("test/t1").process([suspects[1]])))
    for thread in threads:
        thread.join(5)
    assert events == ["first starts", "first ends", "the first is SUCCESS"]


def test_an_exception_raised_into_the_wait_leaves_the_counts_right(
        monkeypatch: pytest.MonkeyPatch) -> None:
    alone = Alone(seconds=30)

    def interrupted(timeout: float | None = None) -> bool:
        raise KeyboardInterrupt  # as a cold shutdown raised into the waiting thread

    with alone.beside():
        monkeypatch.setattr(alone._cond, "wait", interrupted)
        with pytest.raises(KeyboardInterrupt), alone.alone():  # waits for the running task
            pytest.fail("the suspect must not start beside a running task")
        monkeypatch.undo()
    assert alone.state() == (0, 0, 0)
    with alone.beside():  # nothing is held back by a suspect that never ran
        pass
