"""The broker contract of ``brokers/base.py``, run on the memory, database and Redis brokers."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Sequence

import pytest

from django_tasks.brokers.base import Broker, Delivery
from django_tasks.brokers.memory import MemoryBroker
from django_tasks.message import Message

from .conftest import Clock

LEASE = 30.0
_ids = itertools.count(1)
def publish(broker: Broker, queue: str = "default", priority: int = 0,
            eta: dt.datetime | None = None) -> str:
    message = Message(id=f"m{next(_ids)}", task="unit.brokers.t", args=(1,), queue=queue,
                      priority=priority, eta=eta)
    broker.publish([message])
    return message.id


def fetch(broker: Broker, queues: Sequence[str] = ("default",), owner: str = "w1",
          limit: int = 10, lease: float = LEASE) -> list[Delivery]:
    return broker.fetch(list(queues), owner, limit, lease)


def ids(deliveries: Sequence[Delivery]) -> list[str]:
    return [Message.decode(d.body).id for d in deliveries]


def test_fetch_hands_out_the_published_message(any_broker: Broker) -> None:
    message = Message(id="one", task="unit.brokers.t", args=(1, "x"), kwargs={"k": 2},
                      queue="default", priority=3)
    any_broker.publish([message])
    [delivery] = fetch(any_broker)
    assert Message.decode(delivery.body) == message.replace(root_id="one")
    assert (delivery.queue, delivery.deliveries, delivery.owner) == ("default", 1, "w1")


def test_an_empty_queue_fetches_nothing(any_broker: Broker) -> None:
    assert fetch(any_broker) == []


def test_publish_many_at_once(any_broker: Broker) -> None:
    messages = [Message(id=f"batch{i}", task="t") for i in range(5)]
    any_broker.publish(messages)
    assert ids(fetch(any_broker)) == [m.id for m in messages]


def test_a_leased_message_is_invisible_until_its_lease_expires(
    any_broker: Broker, clock: Clock,
) -> None:
    task_id = publish(any_broker)
    assert len(fetch(any_broker, owner="w1")) == 1
    assert fetch(any_broker, owner="w2") == []
    clock.advance(LEASE - 1)
    assert fetch(any_broker, owner="w2") == []
    clock.advance(2)
    [again] = fetch(any_broker, owner="w2")
    assert ids([again]) == [task_id]
    assert (again.deliveries, again.owner) == (2, "w2")
    clock.advance(LEASE + 1)
    assert fetch(any_broker, owner="w3")[0].deliveries == 3


def test_priority_first_then_fifo(any_broker: Broker) -> None:
    low1 = publish(any_broker, priority=0)
    mid = publish(any_broker, priority=5)
    low2 = publish(any_broker, priority=0)
    high = publish(any_broker, priority=9)
    low3 = publish(any_broker, priority=0)
    assert ids(fetch(any_broker)) == [high, mid, low1, low2, low3]


def test_priority_order_holds_across_fetches(any_broker: Broker) -> None:
    low = publish(any_broker, priority=1)
    high = publish(any_broker, priority=8)
    assert ids(fetch(any_broker, limit=1)) == [high]
    assert ids(fetch(any_broker, limit=1)) == [low]


def test_only_the_asked_queues_are_fetched(any_broker: Broker) -> None:
    mail = publish(any_broker, queue="mail")
    default = publish(any_broker, queue="default")
    other = publish(any_broker, queue="other")
    assert ids(fetch(any_broker, ["mail"])) == [mail]
    assert sorted(ids(fetch(any_broker, ["default", "other", "mail"]))) == sorted(
        [default, other])
    assert fetch(any_broker, ["nothing-here"]) == []


def test_limit_bounds_a_batch(any_broker: Broker) -> None:
    published = [publish(any_broker) for _ in range(5)]
    assert ids(fetch(any_broker, limit=2)) == published[:2]
    assert ids(fetch(any_broker, limit=2)) == published[2:4]
    assert ids(fetch(any_broker, limit=2)) == published[4:]


def test_a_delayed_message_waits_for_its_eta(any_broker: Broker, clock: Clock) -> None:
    later = publish(any_broker, eta=clock.now + dt.timedelta(seconds=60))
    now = publish(any_broker)
    first = fetch(any_broker)
    assert ids(first) == [now]
    assert any_broker.depths(["default"]) == {"default": 2}
    any_broker.ack(first)
    clock.advance(59)
    assert fetch(any_broker) == []
    clock.advance(2)
    assert ids(fetch(any_broker)) == [later]


def test_next_due_names_when_the_first_waiting_message_becomes_ready(
        any_broker: Broker, clock: Clock) -> None:
    """A delayed message coming due, or a lease running out: what an idle worker waits for."""
    start = clock.now
    assert any_broker.next_due(["default"], start) is None
    publish(any_broker, eta=start + dt.timedelta(seconds=60))
    publish(any_broker, eta=start + dt.timedelta(seconds=20))
    publish(any_broker, queue="other", eta=start + dt.timedelta(seconds=5))
    assert fetch(any_broker) == []
    assert any_broker.next_due(["default"], start) == pytest.approx(20, abs=0.01)
    assert any_broker.next_due(["default", "other"], start) == pytest.approx(5, abs=0.01)
    assert any_broker.next_due(["elsewhere"], start) is None
    # A priority outside ours (0-9), as another producer may send, is found too.
    publish(any_broker, queue="odd", priority=200, eta=start + dt.timedelta(seconds=3))
    assert any_broker.next_due(["odd"], start) == pytest.approx(3, abs=0.01)
    clock.advance(10)
    publish(any_broker)
    assert len(fetch(any_broker)) == 1  # leased until 40 s
    clock.advance(11)
    [due] = fetch(any_broker)  # the one due at 20 s
    any_broker.ack([due])
    assert any_broker.next_due(["default"], clock.now) == pytest.approx(19, abs=0.01)


def test_next_due_leaves_what_was_due_by_since_to_the_fetch(any_broker: Broker,
                                                            clock: Clock) -> None:
    """What came due after the empty fetch began is due now (a negative wait: look again);
    what was due before it began was that fetch's to take."""
    start = clock.now
    publish(any_broker, eta=start + dt.timedelta(seconds=10))
    clock.advance(15)
    assert any_broker.next_due(["default"], start + dt.timedelta(seconds=5)) == \
        pytest.approx(-5, abs=0.01)
    assert any_broker.next_due(["default"], start + dt.timedelta(seconds=12)) is None


def test_ack_removes_for_good(any_broker: Broker, clock: Clock) -> None:
    publish(any_broker)
    kept = publish(any_broker)
    first, second = fetch(any_broker)
    any_broker.ack([first])
    assert any_broker.depths() == {"default": 1}
    clock.advance(LEASE + 1)
    [again] = fetch(any_broker)
    assert ids([again]) == [kept]
    assert any_broker.ack([second]) == []  # its lease ran out: the new claim holds it
    assert any_broker.ack([again]) == [again]
    assert any_broker.ack([again]) == []  # acking twice is harmless
    assert any_broker.depths() == {}


def test_release_without_count_undoes_the_delivery(any_broker: Broker) -> None:
    publish(any_broker)
    [delivery] = fetch(any_broker)
    any_broker.release([delivery])  # count=False is the default
    [again] = fetch(any_broker, owner="w2")  # visible at once, lease or not
    assert again.deliveries == 1
    any_broker.release([again], count=False)
    assert fetch(any_broker)[0].deliveries == 1


def test_release_with_count_keeps_the_delivery(any_broker: Broker) -> None:
    publish(any_broker)
    any_broker.release(fetch(any_broker), count=True)
    [again] = fetch(any_broker, owner="w2")
    assert again.deliveries == 2


def test_release_owner_releases_only_that_owner(any_broker: Broker) -> None:
    ran, waited, foreign = publish(any_broker), publish(any_broker), publish(any_broker)
    held = fetch(any_broker, owner="dead", limit=2)
    assert ids(held) == [ran, waited]
    assert ids(fetch(any_broker, owner="alive")) == [foreign]
    running = held[0]
    assert any_broker.release_owner("dead", keep_count=[running.tag]) == 2
    again = {Message.decode(d.body).id: d.deliveries for d in fetch(any_broker, owner="w3")}
    assert again == {ran: 2, waited: 1}  # the one that was running keeps its count
    assert any_broker.release_owner("nobody") == 0


def test_renew_keeps_a_lease_past_its_original_end(any_broker: Broker, clock: Clock) -> None:
    publish(any_broker)
    publish(any_broker, queue="other")
    fetch(any_broker, owner="w1", lease=10)
    fetch(any_broker, ["other"], owner="w2", lease=10)
    clock.advance(8)
    assert any_broker.renew(["w1"], 10) == 1
    clock.advance(5)  # 13 s: past the first lease, within the renewed one
    assert fetch(any_broker, owner="thief") == []
    assert fetch(any_broker, ["other"], owner="thief")[0].deliveries == 2  # w2 never renewed
    clock.advance(6)  # 19 s: the renewed lease has run out too
    assert fetch(any_broker, owner="thief")[0].deliveries == 2


def test_renew_of_nobody_renews_nothing(any_broker: Broker) -> None:
    publish(any_broker)
    fetch(any_broker, owner="w1")
    assert any_broker.renew([], 10) == 0
    assert any_broker.renew(["w9"], 10) == 0


def test_requeue_replaces_the_message_after_a_delay(any_broker: Broker, clock: Clock) -> None:
    publish(any_broker)
    [delivery] = fetch(any_broker)
    retry = Message.decode(delivery.body).replace(retries=1, queue="retries", priority=2)
    any_broker.requeue(delivery, retry, 60)
    assert any_broker.depths(["default", "retries"]) == {"default": 0, "retries": 1}
    assert fetch(any_broker, ["default", "retries"]) == []
    clock.advance(61)
    [again] = fetch(any_broker, ["retries"])
    assert Message.decode(again.body).retries == 1
    assert again.deliveries == 1  # a fresh message: its own delivery count


def test_requeue_without_delay_is_due_at_once(any_broker: Broker) -> None:
    publish(any_broker)
    [delivery] = fetch(any_broker)
    any_broker.requeue(delivery, Message.decode(delivery.body).replace(retries=1), 0)
    assert [Message.decode(d.body).retries for d in fetch(any_broker)] == [1]


def test_depths_count_queued_delayed_and_leased(any_broker: Broker, clock: Clock) -> None:
    assert any_broker.depths() == {}
    publish(any_broker)
    publish(any_broker)
    publish(any_broker, queue="mail", eta=clock.now + dt.timedelta(hours=1))
    fetch(any_broker, limit=1)
    assert any_broker.depths() == {"default": 2, "mail": 1}
    assert any_broker.depths(["mail", "empty"]) == {"mail": 1, "empty": 0}


def test_purge_empties_one_queue_and_names_the_tasks(any_broker: Broker) -> None:
    first = publish(any_broker)
    later = publish(any_broker, eta=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    publish(any_broker, queue="keep")
    fetch(any_broker, limit=1)  # leased messages go too, and so do delayed ones
    purged = any_broker.purge("default")
    assert purged.count == 2
    assert sorted(purged.task_ids or ()) == sorted([first, later])
    assert any_broker.purge("default").count == 0
    assert any_broker.depths() == {"keep": 1}


def test_describe_hides_a_password() -> None:
    assert MemoryBroker("memory://").describe() == "memory://"
    assert MemoryBroker("memory://user:secret@host/0").describe() == "memory://user:**@host/0"
    assert MemoryBroker("memory://user:p%40ss@host/0").describe() == "memory://user:**@host/0"
    assert MemoryBroker("memory://:secret@host").describe() == "memory://:**@host"


# -- fencing: a delivery whose lease has moved on writes nothing ---------------------------


def _taken_over(broker: Broker, clock: Clock) -> tuple[Delivery, Delivery]:
    """A delivery of ``w1`` whose lease ran out and was claimed by ``w2`` since."""
    publish(broker)
    [late] = fetch(broker, owner="w1")
    clock.advance(LEASE + 1)
    [current] = fetch(broker, owner="w2")
    assert (late.tag, late.token != current.token) == (current.tag, True)
    return late, current


def test_each_claim_has_a_new_token(any_broker: Broker) -> None:
    publish(any_broker)
    [first] = fetch(any_broker, owner="w1")
    any_broker.release([first])
    [second] = fetch(any_broker, owner="w1")  # the same owner claims it again
    assert first.tag == second.tag and first.token != second.token


def test_a_late_ack_is_refused_and_the_current_holder_keeps_the_message(
        any_broker: Broker, clock: Clock) -> None:
    late, current = _taken_over(any_broker, clock)
    assert any_broker.ack([late]) == []
    assert any_broker.depths() == {"default": 1}
    assert any_broker.ack([current]) == [current]
    assert any_broker.depths() == {}


def test_a_late_release_does_not_hand_back_what_another_worker_holds(
        any_broker: Broker, clock: Clock) -> None:
    late, current = _taken_over(any_broker, clock)
    assert any_broker.release([late]) == 0
    assert any_broker.release([late], count=True) == 0
    assert fetch(any_broker, owner="w3") == []  # still leased to w2
    assert any_broker.release([current]) == 1
    assert fetch(any_broker, owner="w3")[0].deliveries == 2  # w1's lapsed lease counts


def test_a_late_requeue_is_refused(any_broker: Broker, clock: Clock) -> None:
    late, current = _taken_over(any_broker, clock)
    retry = Message.decode(late.body).replace(retries=1)
    assert any_broker.requeue(late, retry, 0) is False
    assert any_broker.depths() == {"default": 1}
    assert fetch(any_broker, owner="w3") == []
    assert any_broker.requeue(current, retry, 0) is True
    assert Message.decode(fetch(any_broker, owner="w3")[0].body).retries == 1


def test_confirm_extends_current_leases_and_names_the_lost_ones(
        any_broker: Broker, clock: Clock) -> None:
    late, _ = _taken_over(any_broker, clock)
    publish(any_broker)
    [mine] = fetch(any_broker, owner="w1", lease=10)
    clock.advance(8)
    assert any_broker.confirm([late, mine], 10) == [mine]
    clock.advance(5)  # past mine's first lease, within the confirmed one
    assert fetch(any_broker, owner="w3") == []


def test_acks_of_several_claims_at_once(any_broker: Broker) -> None:
    publish(any_broker)
    publish(any_broker)
    [one] = fetch(any_broker, limit=1)
    [two] = fetch(any_broker, limit=1)
    assert one.token != two.token
    assert sorted(d.tag for d in any_broker.ack([one, two])) == sorted([one.tag, two.tag])


def test_an_acked_message_cannot_be_acked_or_released_again(any_broker: Broker) -> None:
    publish(any_broker)
    [delivery] = fetch(any_broker)
    assert any_broker.ack([delivery]) == [delivery]
    assert any_broker.ack([delivery]) == []
    assert any_broker.release([delivery]) == 0


def test_runs_count_only_what_was_known_to_be_running(any_broker: Broker,
                                                       clock: Clock) -> None:
    publish(any_broker)
    [first] = fetch(any_broker, owner="dead")
    assert first.runs == 0
    any_broker.release_owner("dead", keep_count=[first.tag], died_running=[first.tag])
    [second] = fetch(any_broker, owner="w2")
    assert (second.deliveries, second.runs) == (2, 1)
    assert any_broker.record_start(second) is True
    clock.advance(LEASE + 1)  # w2's whole worker died: the lease lapses
    [third] = fetch(any_broker, owner="w3")
    assert (third.deliveries, third.runs) == (3, 2)
    assert any_broker.record_start(second) is False  # fenced: w3 holds it now


def test_a_requeued_retry_starts_its_counts_afresh(any_broker: Broker) -> None:
    publish(any_broker)
    [delivery] = fetch(any_broker)
    any_broker.record_start(delivery)
    assert any_broker.requeue(delivery, Message.decode(delivery.body).replace(retries=1), 0)
    [again] = fetch(any_broker)
    assert (again.deliveries, again.runs) == (1, 0)
