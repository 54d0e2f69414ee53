"""The AMQP broker against the local RabbitMQ (skipped where none runs, failed under CI=true).

Not in the contract suite of ``test_brokers.py``: that one assumes leases, and a delivery here
belongs to the channel that received it. Each test uses queues of its own, deleted after it.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections.abc import Iterator, Sequence
from decimal import Decimal

import pytest

from django_tasks.brokers.amqp import AmqpBroker, AmqpUnreachable
from django_tasks.brokers.base import Delivery, Purged
from django_tasks.brokers.headers import surrogate_in
from django_tasks.exceptions import DecodeError
from django_tasks.message import Message
from tests.conftest import require_service

URL = "amqp://guest:guest@127.0.0.1:5672//"


@pytest.fixture
def queue() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


def _make(url: str, queues: list[str], *, fixed: bool = True) -> Iterator[AmqpBroker]:
    """A broker whose consumers keep the URL's prefetch as their window from the start
    (``fixed``: these tests hold several deliveries unacked at once), or whose windows grow
    from one message as a worker's do."""
    require_service("RabbitMQ", "127.0.0.1", 5672)
    broker = _fixed(AmqpBroker(url)) if fixed else AmqpBroker(url)
    try:
        yield broker
    finally:
        broker.close()
        cleaner = AmqpBroker(URL)
        session, _ = cleaner._publisher()
        for name in queues:
            session.channel.queue_delete(queue=name)
        cleaner.close()


def _fixed(broker: AmqpBroker) -> AmqpBroker:
    """``broker`` with its consumers' windows the URL's prefetch from the start."""
    broker.start_window = broker.prefetch
    return broker


@pytest.fixture
def created() -> list[str]:
    """Queue names to delete after the test."""
    return []


@pytest.fixture
def broker(queue: str, created: list[str]) -> Iterator[AmqpBroker]:
    created.append(queue)
    yield from _make(URL, created)


@pytest.fixture
def classic(queue: str, created: list[str]) -> Iterator[AmqpBroker]:
    created.append(queue)
    yield from _make(URL + "?queue_type=classic", created)


def message(queue: str, priority: int = 0, **kwargs: object) -> Message:
    return Message(id=uuid.uuid4().hex, task="unit.amqp.t", args=(1, "x"),
                   kwargs=dict(kwargs), queue=queue, priority=priority)


def fetch(broker: AmqpBroker, queue: str, limit: int = 10, want: int = 1,
          timeout: float = 3.0) -> list[Delivery]:
    """Fetch until ``want`` deliveries came (they arrive asynchronously), or time out."""
    got: list[Delivery] = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        got += broker.fetch([queue], "w1", limit - len(got), 30)
        if len(got) < want:
            broker.wait([queue], 0.1)
    return got


def ids(deliveries: Sequence[Delivery]) -> list[str]:
    return [d.message().id for d in deliveries]


def test_round_trip_decodes_to_the_same_message(broker: AmqpBroker, queue: str) -> None:
    sent = message(queue, priority=3, when="now", nested={"a": [1, None, 2.5]})
    sent = sent.replace(headers={"custom": [1, None, "x"]})
    broker.publish([sent])
    [delivery] = fetch(broker, queue)
    assert delivery.message() == sent.replace(root_id=sent.id)
    assert (delivery.queue, delivery.deliveries, delivery.task_id) == (queue, 1, sent.id)
    assert broker.ack([delivery]) == [delivery]
    assert broker.ack([delivery]) == []  # twice is harmless
    assert broker.depths([queue]) == {queue: 0}


def test_classic_queues_hand_out_higher_priorities_first(
        classic: AmqpBroker, queue: str) -> None:
    assert classic.capabilities.priorities and not classic.capabilities.delivery_counts
    sent = [message(queue, priority=p) for p in (0, 5, 0, 9)]
    classic.publish(sent)
    time.sleep(0.2)  # all in the queue before the first is consumed
    got = fetch(classic, queue, limit=4, want=4)
    assert ids(got)[:2] == [sent[3].id, sent[1].id]
    classic.ack(got)


def test_quorum_queues_count_deliveries(broker: AmqpBroker) -> None:
    caps = broker.capabilities
    assert (caps.leases, caps.native_delays, caps.delivery_counts, caps.priorities) == (
        False, False, True, False)


@pytest.fixture
def prefetch_two(queue: str, created: list[str]) -> Iterator[AmqpBroker]:
    yield from _make(URL + "?prefetch=2", created)


def test_fetch_limit_and_prefetch_leave_the_rest_to_others(
        prefetch_two: AmqpBroker, queue: str) -> None:
    broker = prefetch_two
    broker.publish([message(queue) for _ in range(5)])
    first = fetch(broker, queue, limit=2, want=2)
    assert len(first) == 2
    other = _fixed(AmqpBroker(URL))
    try:
        rest = fetch(other, queue, limit=10, want=3)
        assert len(rest) == 3  # the prefetch of 2 kept the others on the server
        assert other.ack(rest) == rest
    finally:
        other.close()
    assert broker.ack(first) == first


@pytest.fixture
def prefetch_sixteen(queue: str, created: list[str]) -> Iterator[AmqpBroker]:
    created.append(queue)
    yield from _make(URL + "?prefetch=16", created)


def test_batches_grow_past_the_first_fetch(prefetch_sixteen: AmqpBroker, queue: str) -> None:
    """A consumer's window is not what its first batch asked for."""
    broker = prefetch_sixteen
    broker.publish([message(queue) for _ in range(40)])
    first = fetch(broker, queue, limit=1, want=1)
    time.sleep(0.5)  # RabbitMQ sends up to the prefetch ahead of the acks
    later = broker.fetch([queue], "w1", 16, 30)  # one fetch, no waiting
    assert len(later) == 15  # what was sent ahead: the 16 less the one not acked yet
    assert broker.ack([*first, *later]) == [*first, *later]


@pytest.fixture
def growing(queue: str, created: list[str]) -> Iterator[AmqpBroker]:
    """A broker as a worker's: each consumer's window starts at one message."""
    created.append(queue)
    yield from _make(URL + "?prefetch=16", created, fixed=False)


def _take_all(broker: AmqpBroker, queue: str, count: int) -> list[tuple[int, int, int]]:
    """Fetch and ack ``count`` messages as a worker does, batch after batch: for each batch
    its size, the most deliveries any of its messages had, and the window after it."""
    batches: list[tuple[int, int, int]] = []
    deadline = time.monotonic() + 10
    while sum(size for size, _, _ in batches) < count and time.monotonic() < deadline:
        got = broker.fetch([queue], "w1", 100, 30)
        if got:
            batches.append((len(got), max(d.deliveries for d in got),
                            broker.sent_ahead() or 0))
            assert broker.ack(got) == got
        else:
            broker.wait([queue], 0.05)
    return batches


def _taken_by_another(queue: str, count: int) -> None:
    """Another consumer takes (and acks) ``count`` messages of ``queue``: all that the first
    one's window left on the server."""
    other = _fixed(AmqpBroker(URL))
    try:
        rest = fetch(other, queue, limit=10, want=count)
        assert len(rest) == count and other.ack(rest) == rest
    finally:
        other.close()


def test_a_window_starts_at_one_message_and_doubles_to_the_prefetch(
        growing: AmqpBroker, queue: str) -> None:
    """An idle worker's processes are sent one message each; a busy one's window doubles
    when a fetch finds nothing after one that took half of it or more, up to the URL's
    prefetch, and no message comes back to the queue on the way (a consumer cancelled to
    start again with a larger prefetch gives back, counted, what was on its way to it)."""
    broker = growing
    broker.publish([message(queue) for _ in range(120)])
    time.sleep(0.2)  # all queued before the consumer starts
    batches = _take_all(broker, queue, 120)
    assert sum(size for size, _, _ in batches) == 120
    assert batches[0][0] == 1
    windows = [window for _, _, window in batches]
    assert windows == sorted(windows) and windows[0] == 1 and windows[-1] >= 4, batches
    assert all(window in (1, 2, 4, 8, 16) for window in windows), batches
    assert {deliveries for _, deliveries, _ in batches} == {1}, batches


@pytest.fixture
def up_to_four(queue: str, created: list[str]) -> Iterator[AmqpBroker]:
    created.append(queue)
    yield from _make(URL + "?prefetch=4", created, fixed=False)


def test_a_process_holds_no_more_than_the_prefetch(up_to_four: AmqpBroker, queue: str) -> None:
    broker = up_to_four
    broker.publish([message(queue) for _ in range(10)])
    held: list[Delivery] = []
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:  # none acked: the window still grows, to 4
        held += broker.fetch([queue], "w1", 10, 30)
        broker.wait([queue], 0.05)
    assert len(held) == 4 and broker.sent_ahead() == 4
    _taken_by_another(queue, 6)
    assert broker.ack(held) == held


def test_a_window_doubles_after_a_wait_for_what_the_last_acks_let_come(
        growing: AmqpBroker, queue: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fetch that took less than half the window, acked, then a short wait that ends with
    messages: the window held them back, not the queue. A wait long after the last ack
    says nothing of the window."""
    from django_tasks.brokers import amqp as module

    monkeypatch.setattr(module, "STARVED_SECONDS", 0.5)  # steps of this test, not of RabbitMQ
    broker = growing
    broker.publish([message(queue)])
    taken = fetch(broker, queue, limit=10, want=1)
    broker.ack(taken)
    assert broker.fetch([queue], "w1", 10, 30) == [] and broker.sent_ahead() == 2  # took all
    assert broker.fetch([queue], "w1", 10, 30) == [] and broker.sent_ahead() == 2
    # Not starved: the last ack was long before the wait.
    time.sleep(0.7)
    broker.publish([message(queue)])
    assert broker.wait([queue], 1.0) is True
    taken = broker.fetch([queue], "w1", 10, 30)
    assert len(taken) == 1 and broker.sent_ahead() == 2  # half of 2: full, next fetch grows
    broker.ack(taken)
    assert broker.fetch([queue], "w1", 10, 30) == [] and broker.sent_ahead() == 4
    # Starved: acked just before a wait that ends at once with messages.
    broker.publish([message(queue)])
    time.sleep(0.2)
    taken = broker.fetch([queue], "w1", 10, 30)
    assert len(taken) == 1  # a quarter of the window: not full
    broker.ack(taken)
    broker.publish([message(queue)])
    assert broker.wait([queue], 1.0) is True
    assert broker.sent_ahead() == 4
    taken = broker.fetch([queue], "w1", 10, 30)
    assert len(taken) == 1 and broker.sent_ahead() == 8
    broker.ack(taken)


def test_an_idle_process_goes_back_to_one_message(growing: AmqpBroker, queue: str) -> None:
    broker = growing
    broker.publish([message(queue) for _ in range(40)])
    _take_all(broker, queue, 40)
    grown = broker.sent_ahead() or 0
    assert grown >= 4
    assert broker.wait([queue], 0.5) is False
    assert broker.sent_ahead() == grown  # not idle for long enough yet
    assert broker.wait([queue], 0.7) is False  # nothing came for longer than a second
    assert broker.sent_ahead() == 1
    broker.publish([message(queue) for _ in range(3)])
    time.sleep(0.3)  # RabbitMQ would have sent more by now, had the window let it
    held = broker.fetch([queue], "w1", 10, 30)
    assert len(held) == 1
    _taken_by_another(queue, 2)
    assert broker.ack(held) == held


def test_release_requeues(broker: AmqpBroker, queue: str) -> None:
    sent = message(queue)
    broker.publish([sent])
    [delivery] = fetch(broker, queue)
    assert broker.release([delivery]) == 1
    [again] = fetch(broker, queue)
    assert ids([again]) == [sent.id]
    assert again.deliveries == 2  # a quorum queue counts every return
    assert broker.ack([again]) == [again]


def test_a_closed_connection_cannot_ack_and_the_message_is_redelivered(
        broker: AmqpBroker, queue: str) -> None:
    sent = message(queue)
    broker.publish([sent])
    [delivery] = fetch(broker, queue)
    assert broker.confirm([delivery], 30) == [delivery]
    broker.close()  # the consumer's connection ends
    assert broker.confirm([delivery], 30) == []
    assert broker.ack([delivery]) == []
    other = _fixed(AmqpBroker(URL))
    try:
        [again] = fetch(other, queue)
        assert (ids([again]), again.deliveries) == ([sent.id], 2)
        assert other.ack([again]) == [again]
    finally:
        other.close()


def test_wait_wakes_on_a_message_and_times_out_otherwise(
        broker: AmqpBroker, queue: str) -> None:
    assert fetch(broker, queue, want=0) == []
    started = time.monotonic()
    assert broker.wait([queue], 0.3) is False
    assert 0.25 < time.monotonic() - started < 2
    publisher = AmqpBroker(URL)
    try:
        publisher.publish([message(queue)])
    finally:
        publisher.close()
    assert broker.wait([queue], 3) is True
    [delivery] = broker.fetch([queue], "w1", 1, 30)
    broker.ack([delivery])


def test_the_password_is_masked_and_an_unreachable_server_fails_fast(queue: str) -> None:
    broker = AmqpBroker("amqp://guest:s3cret-pw@127.0.0.1:1//?queue_type=classic")
    assert "s3cret-pw" not in broker.describe()
    started = time.monotonic()
    with pytest.raises(AmqpUnreachable) as info:
        broker.publish([message(queue)])
    assert time.monotonic() - started < 5
    assert "s3cret-pw" not in str(info.value)
    assert "127.0.0.1:1" in str(info.value)
    assert isinstance(info.value, ConnectionError)


def test_depths_and_purge(broker: AmqpBroker, queue: str) -> None:
    broker.publish([message(queue) for _ in range(3)])
    assert broker.depths([queue]) == {queue: 3}
    assert broker.depths() == {queue: 3}
    assert broker.purge(queue) == Purged(3)  # the ids are not known
    assert broker.depths([queue]) == {queue: 0}
    assert broker.depths(["no-such-queue-" + queue]) == {"no-such-queue-" + queue: 0}
    assert broker.ping() is True


def test_url_options_are_checked() -> None:
    from django_tasks.exceptions import ConfigurationError

    with pytest.raises(ConfigurationError, match="queue_type"):
        AmqpBroker(URL + "?queue_type=stream")
    with pytest.raises(ConfigurationError, match="consumer_timeout"):
        AmqpBroker(URL + "?consumer_timeout=-1")
    for bad in ("0", "x", "70000"):
        with pytest.raises(ConfigurationError, match="prefetch= must be a whole number"):
            AmqpBroker(URL + f"?prefetch={bad}")
    assert AmqpBroker(URL + "?prefetch=1").prefetch == 1
    broker = AmqpBroker(URL + "?consumer_timeout=60&queue_type=classic")
    assert broker._arguments["x-consumer-timeout"] == 60_000
    assert "consumer_timeout" not in broker._kombu_url


def test_a_batch_is_confirmed_together_and_whole_when_publish_returns(
        broker: AmqpBroker, queue: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """delay_many() and the outbox relay publish batches: every message is sent, then the
    confirms of all are awaited at once; when publish() returns RabbitMQ holds them all."""
    from django_tasks.brokers import amqp as amqp_module

    waits: list[int] = []
    real = amqp_module._Session.wait_confirms
    monkeypatch.setattr(amqp_module._Session, "wait_confirms",
                        lambda self, timeout: (waits.append(len(self.unconfirmed)),
                                               real(self, timeout))[1])
    sent = [message(queue, priority=i % 10) for i in range(300)]
    broker.publish(sent)
    broker.publish([message(queue)])
    assert len(waits) == 2  # one wait per publish() (some confirms come in while sending)
    assert broker.depths([queue]) == {queue: 301}
    session, _ = broker._publisher()
    assert session.unconfirmed == set() and session.sequence == 301
    got = fetch(broker, queue, limit=10, want=10)
    assert set(ids(got)) <= {m.id for m in sent} and len(got) == 10


def _count_acks(broker: AmqpBroker, queue: str) -> list[tuple[int, bool]]:
    """The ``basic.ack`` frames the consumer's channel sends from now on: (tag, multiple)."""
    session = broker._consumer([queue])
    sent: list[tuple[int, bool]] = []
    basic_ack = session.channel.basic_ack

    def counting(tag: int, multiple: bool = False) -> None:
        sent.append((tag, multiple))
        basic_ack(tag, multiple=multiple)

    session.channel.basic_ack = counting
    return sent


def _redelivered(queue: str, want: int) -> list[str]:
    """The ids RabbitMQ hands a new consumer (what the closed one left unacked)."""
    other = _fixed(AmqpBroker(URL))
    try:
        again = fetch(other, queue, want=want, timeout=3.0)
        assert other.ack(again) == again
        return ids(again)
    finally:
        other.close()


def test_a_batch_is_acked_with_one_frame_and_only_what_it_holds(
        broker: AmqpBroker, queue: str) -> None:
    """Acking every message received up to the last one sends one ``basic.ack`` with
    ``multiple``; a batch that leaves an earlier message unsettled is acked one by one, and
    that message stays unacked (RabbitMQ gives it to the next consumer)."""
    sent = [message(queue) for _ in range(8)]
    broker.publish(sent)
    got = fetch(broker, queue, limit=8, want=8)
    acks = _count_acks(broker, queue)
    assert broker.ack(got[:4]) == got[:4]
    assert [multiple for _, multiple in acks] == [True]
    acks.clear()
    kept = got[4]  # say a retry still to be requeued: not part of the ack
    assert broker.ack(got[5:]) == got[5:]
    assert acks and not any(multiple for _, multiple in acks)
    assert len(acks) == 3
    broker.close()  # the consumer goes: only what it did not ack comes back
    assert _redelivered(queue, want=1) == ids([kept])


def test_reads_ahead_instead_of_a_system_call_per_frame_part(
        broker: AmqpBroker, queue: str) -> None:
    """py-amqp reads each part of each frame with its own ``recv`` (about nine a message);
    the consumer's transport asks for a few kilobytes at once, so 200 messages take far
    fewer reads than messages, and arrive whole and in order."""
    sent = [message(queue) for _ in range(200)]
    broker.publish(sent)
    time.sleep(0.5)  # let RabbitMQ send the prefetch's worth
    session = broker._consumer([queue])
    transport = session.connection.connection.transport
    reads: list[int] = []
    read_ahead = transport._quick_recv

    def counting(size: int) -> bytes:
        data = read_ahead(size)
        reads.append(len(data))
        return data

    transport._quick_recv = counting
    got: list[Delivery] = []
    deadline = time.monotonic() + 10
    while len(got) < 200 and time.monotonic() < deadline:
        batch = fetch(broker, queue, limit=16, want=1)
        assert broker.ack(batch) == batch
        got += batch
    assert ids(got) == [m.id for m in sent]
    assert len(reads) < 200, f"{len(reads)} reads for 200 messages"


def _publish_raw(broker: AmqpBroker, queue: str, body: bytes,
                 headers: dict[str, object]) -> None:
    """A message as another client might send it: any body, any headers."""
    session, _ = broker._publisher()
    broker._declare(session, queue)
    raw = session.channel.prepare_message(body, 0, "application/json", "utf-8", headers,
                                          {"correlation_id": "corr-1", "delivery_mode": 2})
    session.channel.basic_publish(raw, exchange="", routing_key=queue)


def test_a_delivery_carries_its_envelope_decoded(broker: AmqpBroker, queue: str) -> None:
    """The envelope is put together as a dict, not written as JSON to be parsed again;
    ``body`` keeps the body as RabbitMQ delivered it, and typed arguments come back typed."""
    when = dt.datetime(2026, 11, 29, 7, 0, tzinfo=dt.UTC)
    sent = message(queue).replace(args=(when, Decimal("1.50")))
    broker.publish([sent])
    [delivery] = fetch(broker, queue)
    assert delivery.envelope is not None
    assert delivery.envelope["headers"]["id"] == sent.id
    assert json.loads(delivery.body)[0][1] == {"__type__": "decimal", "__value__": "1.50"}
    assert delivery.message().args == (when, Decimal("1.50"))
    broker.ack([delivery])


@pytest.mark.parametrize(("body", "headers", "reason"), [
    (b"{not json", {"id": "bad-1", "task": "unit.amqp.t"}, "not valid JSON"),
    (b"[[], {}, {}]", {"id": "bad-2", "task": "unit.amqp.t\ud800"}, "lone surrogate"),
    (b"[[1], {}, {}]", {"task": "unit.amqp.t"}, "header 'id' is missing"),
])
def test_a_delivery_that_does_not_decode_says_why(
        broker: AmqpBroker, queue: str, body: bytes, headers: dict[str, object],
        reason: str) -> None:
    _publish_raw(broker, queue, body, headers)
    [delivery] = fetch(broker, queue)
    with pytest.raises(DecodeError, match=reason):
        delivery.message()
    assert delivery.task_id == headers.get("id", "corr-1")
    broker.ack([delivery])


@pytest.mark.parametrize(("headers", "found"), [
    ({"task": "t", "id": "a", "eta": None, "retries": 0, "timelimit": [None, None]}, False),
    ({"task": "t", "argsrepr": "('grüße', '日本')", "custom": {"k": ["é"]}}, False),
    ({"task": "t", "argsrepr": "x\udc80"}, True),
    ({"task": "t", "k\ud800": 1}, True),
    ({"task": "t", "custom": {"deep": ["ok", ("\udfff",)]}}, True),
    ({"task": "t", "custom": {"\ud800": 1}}, True),
])
def test_a_lone_surrogate_is_found_in_any_header(headers: dict[str, object],
                                                  found: bool) -> None:
    """py-amqp reads header text with ``surrogatepass``: such text, at any depth, keeps the
    delivery from being decoded (no database could store it)."""
    assert surrogate_in(headers) is found
