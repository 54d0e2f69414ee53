"""What a consumer tells its supervisor: the task it is running, the deliveries it has run but
not yet settled, and when it last made progress.

In the ``threads`` and ``solo`` pools a :class:`Slot` is a plain object. A ``prefork`` child
writes a :class:`SharedSlot`, a C struct in memory shared with its supervisor, allocated
before anything is forked. The supervisor reads it to renew, to enforce hard time limits,
and, when the child dies, to count the deliveries that had started (the running one and
those that ran but were not settled yet) while handing back the rest uncounted.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

#: Started-but-unsettled deliveries a shared slot lists; past this the supervisor counts
#: every delivery the child held as started.
RAN_CAPACITY = 512
#: Deliveries a shared slot lists as waiting to start (a batch, and the next one when it is
#: fetched ahead); later ones are never given back by the supervisor (the consumer hands
#: them back itself).
HELD_CAPACITY = 512
_WAITING, _TAKEN, _GIVEN_BACK = 0, 1, 2

#: A delivery waiting in a consumer's batch: (tag, lease token, delivery count).
Held = tuple[int, int, int]
_TEXT = 1024  # bytes: 255 characters of UTF-8, with room to spare
_ID = 64  # bytes of a held delivery's task id (for ``inspect reserved``)


@dataclass(frozen=True, slots=True)
class Running:
    """The task a consumer is running, as its supervisor sees it."""

    tag: int
    token: int
    task_id: str
    task_name: str
    queue: str
    deliveries: int
    retries: int
    started: float  # time.time()
    hard_limit: float  # seconds; 0 is none
    deadline: float  # time.monotonic() when the hard limit is reached; 0 is none

    @property
    def label(self) -> str:
        return f"{self.task_name}[{self.task_id}]"


class Slot:
    """A consumer's slot in the supervisor's own process (``threads``, ``solo``)."""

    def __init__(self) -> None:
        self._running: Running | None = None
        self._ran: list[int] = []
        self._held: list[Held] = []
        self._states = bytearray()
        self._ids: list[str] = []
        self._lock: Any = threading.Lock()
        self.progress = time.monotonic()
        self._revoking = 0
        self._done = self._failed = 0

    def set(self, running: Running) -> None:
        self._running = running

    def clear(self) -> None:
        self._running = None
        self.mark()

    def get(self) -> Running | None:
        return self._running

    def ran(self, tags: Sequence[int]) -> None:
        """These deliveries have started and are not settled yet (replaces the last list)."""
        self._ran = list(tags)

    def ran_add(self, tag: int) -> None:
        """One more delivery has run and is not settled yet."""
        self._ran.append(tag)

    def ran_tags(self) -> list[int] | None:
        """What ``ran`` and ``ran_add`` were told; None when it could not all be kept."""
        return list(self._ran)

    def mark(self) -> None:
        """Progress: a poll of the broker, or a finished task."""
        self.progress = time.monotonic()

    def finished(self) -> None:
        """The consumer has stopped: it is not stalled, whatever the time."""
        self.progress = float("inf")

    def reset(self) -> None:
        self._running, self._ran = None, []
        self._held, self._states, self._ids = [], bytearray(), []
        self._revoking = 0
        self.mark()

    # -- what the control channel reads and writes -------------------------------------------

    def count(self, *, failed: bool) -> None:
        """One more task ran here (it failed): ``inspect stats``' totals."""
        self._done += 1
        self._failed += failed

    def totals(self) -> tuple[int, int]:
        """Tasks run and tasks failed in this slot, over every consumer it had."""
        return self._done, self._failed

    def revoke_running(self, tag: int) -> None:
        """The supervisor: the task running under delivery ``tag`` is being terminated."""
        self._revoking = tag

    def revoking(self) -> bool:
        """Whether the running task is the one the supervisor is terminating."""
        running = self.get()
        return running is not None and running.tag == self._revoking != 0

    def reserved(self) -> list[str]:
        """Task ids of the batch's deliveries that wait to start (``inspect reserved``)."""
        if not self._lock.acquire(timeout=0.05):  # the consumer is taking one: ask later
            return []
        try:
            return [self._held_id(i) for i in range(self._held_count())
                    if self._state(i) == _WAITING and self._held_id(i)]
        finally:
            self._lock.release()

    def _held_id(self, index: int) -> str:
        return self._ids[index] if index < len(self._ids) else ""

    # -- the batch's deliveries not started yet --------------------------------------------
    # The consumer lists them (hold), and takes each as it starts it (take). While a long
    # task runs, the supervisor may give the rest back to the broker for idle consumers
    # (give_back); the consumer then skips them. A lock makes each delivery either taken or
    # given back, never both.

    def hold(self, entries: Sequence[Held], ids: Sequence[str] = ()) -> None:
        """These deliveries of the new batch wait to start, in this order (``ids``: their
        task ids, where known)."""
        with self._lock:
            self._store_held(entries[:self._held_capacity()])
            self._store_ids(ids[:self._held_capacity()])

    def extend(self, entries: Sequence[Held], ids: Sequence[str] = ()) -> int:
        """These deliveries (the next batch, fetched ahead) wait to start after those
        held: the index of the first, for ``take`` and ``take_rest``."""
        with self._lock:
            start = self._held_count()
            room = max(0, self._held_capacity() - start)
            self._store_held(entries[:room], start)
            self._store_ids(ids[:room], start)
            return start

    def take(self, index: int) -> bool:
        """The consumer starts the ``index``-th delivery of its batch; False if the supervisor
        gave it back meanwhile (skip it: it is no longer this consumer's)."""
        with self._lock:
            if index >= self._held_count():
                return True
            if self._state(index) == _GIVEN_BACK:
                return False
            self._set_state(index, _TAKEN)
            return True

    def take_rest(self, start: int, total: int) -> list[int]:
        """Take every delivery of the batch (``total`` long) from ``start`` on that was not
        given back (the consumer hands them back itself); their indexes."""
        with self._lock:
            count = self._held_count()
            taken = [i for i in range(start, min(count, total)) if self._state(i) == _WAITING]
            for index in taken:
                self._set_state(index, _TAKEN)
        return taken + list(range(max(start, count), total))

    def give_back(self, release: Callable[[list[Held]], object],
                  timeout: float = 0.05) -> list[Held]:
        """Supervisor: hand the waiting deliveries back with ``release`` (while the consumer
        cannot take one), then mark them given back; what was given back. Nothing if the
        lock is busy or ``release`` raises (the consumer then runs them itself)."""
        if not self._lock.acquire(timeout=timeout):
            return []
        try:
            waiting = [i for i in range(self._held_count()) if self._state(i) == _WAITING]
            if not waiting:
                return []
            held = [self._held_entry(i) for i in waiting]
            release(held)
            for index in waiting:
                self._set_state(index, _GIVEN_BACK)
            return held
        finally:
            self._lock.release()

    def _held_capacity(self) -> int:
        return 1 << 30

    def _store_held(self, entries: Sequence[Held], start: int = 0) -> None:
        self._held = self._held[:start] + list(entries)
        self._states = self._states[:start] + bytearray(len(entries))

    def _store_ids(self, ids: Sequence[str], start: int = 0) -> None:
        self._ids = self._ids[:start] + [""] * (start - len(self._ids)) + list(ids)

    def _held_count(self) -> int:
        return len(self._held)

    def _held_entry(self, index: int) -> Held:
        return self._held[index]

    def _state(self, index: int) -> int:
        return self._states[index]

    def _set_state(self, index: int, state: int) -> None:
        self._states[index] = state


class _SlotData(ctypes.Structure):
    _fields_ = [
        ("seq", ctypes.c_uint64),  # odd while the child writes the record (a seqlock)
        ("progress", ctypes.c_double),
        ("busy", ctypes.c_bool),
        ("tag", ctypes.c_int64),
        ("token", ctypes.c_int64),
        ("deliveries", ctypes.c_int64),
        ("retries", ctypes.c_int64),
        ("started", ctypes.c_double),
        ("hard_limit", ctypes.c_double),
        ("deadline", ctypes.c_double),
        ("task_id", ctypes.c_char * _TEXT),
        ("task_name", ctypes.c_char * _TEXT),
        ("queue", ctypes.c_char * _TEXT),
        ("ran_count", ctypes.c_int32),
        ("ran_overflow", ctypes.c_bool),
        ("ran", ctypes.c_int64 * RAN_CAPACITY),
        ("held_count", ctypes.c_int32),
        ("held_tag", ctypes.c_int64 * HELD_CAPACITY),
        ("held_token", ctypes.c_int64 * HELD_CAPACITY),
        ("held_deliveries", ctypes.c_int64 * HELD_CAPACITY),
        ("held_state", ctypes.c_uint8 * HELD_CAPACITY),
        ("held_id", (ctypes.c_char * _ID) * HELD_CAPACITY),
        ("revoking", ctypes.c_int64),  # the tag of the running task being terminated
        ("done", ctypes.c_int64),
        ("failed", ctypes.c_int64),
    ]


def _fit(text: str) -> bytes:
    data = text.encode("utf-8", "backslashreplace")
    return data if len(data) < _TEXT else data[:_TEXT - 1].decode("utf-8", "ignore").encode()


class SharedSlot(Slot):
    """A slot in shared memory: written by one prefork child, read by the supervisor."""

    def __init__(self) -> None:
        self._data = multiprocessing.get_context("fork").RawValue(_SlotData)
        self.reset()

    # The struct is the state; these properties keep Slot's interface.
    @property
    def progress(self) -> float:
        return float(self._data.progress)

    @progress.setter
    def progress(self, value: float) -> None:
        if hasattr(self, "_data"):
            self._data.progress = value

    def _write(self, **fields: object) -> None:
        data = self._data
        data.seq += 1
        for name, value in fields.items():
            setattr(data, name, value)
        data.seq += 1

    def set(self, running: Running) -> None:
        # Field by field, not through _write: this runs before every task.
        data = self._data
        data.seq += 1
        data.busy, data.tag, data.token = True, running.tag, running.token
        data.deliveries, data.retries = running.deliveries, running.retries
        data.started, data.hard_limit = running.started, running.hard_limit
        data.deadline, data.task_id = running.deadline, _fit(running.task_id)
        data.task_name, data.queue = _fit(running.task_name), _fit(running.queue)
        data.seq += 1

    def clear(self) -> None:
        self._write(busy=False)
        self.mark()

    def _read(self, copy: Callable[[_SlotData], T]) -> T:
        """``copy(struct)`` taken while no write was under way (a sequence lock)."""
        data = self._data
        while True:
            before = data.seq
            if before % 2:
                time.sleep(0)
                continue
            value = copy(data)
            if data.seq == before:
                return value

    def get(self) -> Running | None:
        return self._read(lambda data: None if not data.busy else Running(
            int(data.tag), int(data.token), data.task_id.decode(errors="replace"),
            data.task_name.decode(errors="replace"), data.queue.decode(errors="replace"),
            int(data.deliveries), int(data.retries), float(data.started),
            float(data.hard_limit), float(data.deadline)))

    def ran(self, tags: Sequence[int]) -> None:
        data = self._data
        data.seq += 1
        if len(tags) > RAN_CAPACITY:
            data.ran_overflow, data.ran_count = True, 0
        else:
            data.ran_overflow, data.ran_count = False, len(tags)
            for index, tag in enumerate(tags):
                data.ran[index] = tag
        data.seq += 1

    def ran_add(self, tag: int) -> None:
        data = self._data
        data.seq += 1
        if data.ran_count >= RAN_CAPACITY:
            data.ran_overflow = True
        elif not data.ran_overflow:
            data.ran[data.ran_count] = tag
            data.ran_count += 1
        data.seq += 1

    def ran_tags(self) -> list[int] | None:
        return self._read(
            lambda data: None if data.ran_overflow else list(data.ran[:data.ran_count]))

    def reset(self) -> None:
        """Before a child is forked: a fresh record, and a fresh lock (one a killed child
        held would stay taken)."""
        self._lock = multiprocessing.get_context("fork").Lock()
        self._write(busy=False, ran_count=0, ran_overflow=False, held_count=0, revoking=0)
        self.mark()

    def count(self, *, failed: bool) -> None:
        self._data.done += 1
        self._data.failed += failed

    def totals(self) -> tuple[int, int]:
        return int(self._data.done), int(self._data.failed)

    def revoke_running(self, tag: int) -> None:
        self._data.revoking = tag

    def revoking(self) -> bool:
        running = self.get()
        return running is not None and running.tag == int(self._data.revoking) != 0

    def _store_ids(self, ids: Sequence[str], start: int = 0) -> None:
        data = self._data
        for index, task_id in enumerate(ids, start):
            data.held_id[index].value = task_id.encode()[:_ID - 1]
        for index in range(start + len(ids), int(data.held_count)):
            data.held_id[index].value = b""

    def _held_id(self, index: int) -> str:
        return bytes(self._data.held_id[index].value).decode(errors="replace")

    def _held_capacity(self) -> int:
        return HELD_CAPACITY

    def _store_held(self, entries: Sequence[Held], start: int = 0) -> None:
        data = self._data
        for index, (tag, token, deliveries) in enumerate(entries, start):
            data.held_tag[index], data.held_token[index] = tag, token
            data.held_deliveries[index], data.held_state[index] = deliveries, _WAITING
        data.held_count = start + len(entries)

    def _held_count(self) -> int:
        return int(self._data.held_count)

    def _held_entry(self, index: int) -> Held:
        data = self._data
        return (int(data.held_tag[index]), int(data.held_token[index]),
                int(data.held_deliveries[index]))

    def _state(self, index: int) -> int:
        return int(self._data.held_state[index])

    def _set_state(self, index: int, state: int) -> None:
        self._data.held_state[index] = state
