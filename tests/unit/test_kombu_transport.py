"""The broker on kombu's other transports: the filesystem transport in a folder of the test's
own, the SQLAlchemy transport in tables of the test's own in the local PostgreSQL, and kombu's
py-amqp transport against the local RabbitMQ as a transport that pushes (PostgreSQL and
RabbitMQ: skipped where none runs, failed under CI=true).

Not in the contract suite of ``test_brokers.py``: that one assumes leases, and a delivery here
belongs to the connection that received it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings

from django_tasks.brokers.base import Delivery, Purged, QueueCounts
from django_tasks.brokers.kombu_transport import KombuBroker, KombuUnreachable
from django_tasks.conf import get_broker, reset_cache
from django_tasks.exceptions import ConfigurationError
from django_tasks.message import Message
from tests.conftest import require_service, schema_of_its_own

# kombu 5.7's SQLAlchemy models load with ``noload``, which SQLAlchemy 2.1 deprecates: a
# warning of kombu's, about its own tables.
pytestmark = pytest.mark.filterwarnings(
    "ignore:The ``noload`` loader strategy is deprecated:DeprecationWarning")

#: Looks every 20 ms when waiting: kombu's default for polled transports is a second.
FAST = {"polling_interval": 0.02}


def message(queue: str = "default", **fields: Any) -> Message:
    return Message(id=f"k-{uuid.uuid4().hex[:10]}", task="unit.kombu.t", args=(1, "x"),
                   kwargs={"k": 2}, queue=queue, **fields)


def ids(deliveries: list[Delivery]) -> list[str]:
    return [d.message().id for d in deliveries]


def folder_broker(folder: Path) -> KombuBroker:
    with override_settings(TASKS_BROKER_TRANSPORT_OPTIONS=FAST):
        return KombuBroker(f"filesystem://{folder}")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "messages"


@pytest.fixture(params=["filesystem", "sqlalchemy"])
def make(request: pytest.FixtureRequest, folder: Path) -> Iterator[Callable[[], KombuBroker]]:
    """Brokers of processes sharing one place of messages: a folder, or kombu's tables in a
    PostgreSQL schema of the test's own."""
    made: list[KombuBroker] = []
    with contextlib.ExitStack() as stack:
        if request.param == "filesystem":
            url = f"filesystem://{folder}"
        else:
            url, _ = stack.enter_context(schema_of_its_own())

        def new() -> KombuBroker:
            with override_settings(TASKS_BROKER_TRANSPORT_OPTIONS=FAST):
                made.append(KombuBroker(url))
            return made[-1]
        yield new
        for broker in made:
            broker.close()


@pytest.fixture
def broker(make: Callable[[], KombuBroker]) -> KombuBroker:
    """A consuming process's broker."""
    return make()


@pytest.fixture
def other(make: Callable[[], KombuBroker]) -> KombuBroker:
    """Another process's broker on the same messages."""
    return make()


# -- choosing and configuring ---------------------------------------------------------------


@pytest.mark.parametrize("url", ["filesystem:///tmp/x", "kombu+filesystem:///tmp/x",
                                 "kombu+redis://127.0.0.1:6379/9",
                                 "sqla+postgresql://postgres@127.0.0.1:5432/test"])
def test_the_broker_url_picks_kombu_for_its_transports(url: str) -> None:
    with override_settings(TASKS_BROKER_URL=url):
        reset_cache()
        try:
            assert isinstance(get_broker(), KombuBroker)
        finally:
            reset_cache()


@pytest.mark.skipif(importlib.util.find_spec("botocore") is not None,
                    reason="botocore is installed: the SQS transport imports")
@pytest.mark.parametrize("url", ["sqs://", "kombu+sqs://"])
def test_a_transport_whose_library_is_missing_says_what_to_install(url: str) -> None:
    with pytest.raises(ConfigurationError, match=r"No module named 'botocore'.*"
                                                 r"pip install 'kombu\[sqs\]'"):
        KombuBroker(url)


def test_url_options_and_transports_are_checked(folder: Path) -> None:
    with pytest.raises(ConfigurationError, match="names no kombu transport"):
        KombuBroker("kombu+://x")
    with pytest.raises(ConfigurationError, match="No such transport: nosuch"):
        KombuBroker("kombu+nosuch://x")
    for bad in ("0", "x", "70000"):
        with pytest.raises(ConfigurationError, match="prefetch= must be a whole number"):
            KombuBroker(f"filesystem://{folder}?prefetch={bad}")
    with override_settings(TASKS_BROKER_TRANSPORT_OPTIONS=["not", "a", "dict"]), \
            pytest.raises(ConfigurationError, match="must be a dict"):
        KombuBroker("filesystem://")
    broker = KombuBroker(f"kombu+filesystem://{folder}?prefetch=5")
    assert (broker.transport, broker.prefetch) == ("filesystem", 5)
    assert broker._kombu_url == f"filesystem://{folder}"  # no prefix, no option of ours


def test_an_unknown_scheme_names_the_schemes_to_use() -> None:
    with override_settings(TASKS_BROKER_URL="nats://127.0.0.1"):
        reset_cache()
        with pytest.raises(ConfigurationError, match=r"kombu\+<transport>://"):
            get_broker()
    reset_cache()


def test_the_url_path_is_the_folder_made_for_the_messages(folder: Path) -> None:
    assert not folder.exists()
    broker = folder_broker(folder)
    assert folder.is_dir()
    assert broker.options == {"data_folder_in": str(folder), "data_folder_out": str(folder)}
    with override_settings(TASKS_BROKER_TRANSPORT_OPTIONS={"data_folder_in": str(folder / "a"),
                                                           "data_folder_out": str(folder / "a")}):
        named = KombuBroker(f"filesystem://{folder / 'ignored'}")
    assert named.options["data_folder_in"] == str(folder / "a")
    assert (folder / "a").is_dir() and not (folder / "ignored").exists()


def test_a_polled_transport_hands_over_what_is_asked_and_waits_late_by_its_interval(
        broker: KombuBroker) -> None:
    assert broker.window is None and broker.sent_ahead() is None
    assert broker.wait_lateness == FAST["polling_interval"]
    # Set on the transport, never handed to it (SQLAlchemy's would pass it to create_engine).
    assert "polling_interval" not in broker.options
    session, _ = broker._publisher()
    assert session.connection.transport.polling_interval == FAST["polling_interval"]
    caps = broker.capabilities
    assert not (caps.leases or caps.native_delays or caps.delivery_counts or caps.priorities
                or caps.transactional or caps.broadcast)
    assert caps.durable


# -- delivering and settling ------------------------------------------------------------------


def test_round_trip_decodes_to_the_same_message(broker: KombuBroker, other: KombuBroker) -> None:
    sent = message(priority=3)
    other.publish([sent])
    [delivery] = broker.fetch(["default"], "w1", 10, 30)
    assert delivery.message() == sent.replace(root_id=sent.id)
    assert (delivery.queue, delivery.deliveries, delivery.owner, delivery.task_id) == (
        "default", 1, "w1", sent.id)
    assert broker.ack([delivery]) == [delivery]
    assert broker.depths(["default"]) == {"default": 0}


def test_a_fetch_takes_no_more_than_asked_and_leaves_the_rest_to_others(
        broker: KombuBroker, other: KombuBroker) -> None:
    sent = [message() for _ in range(5)]
    other.publish(sent)
    mine = broker.fetch(["default"], "w1", 2, 30)
    theirs = other.fetch(["default"], "w2", 10, 30)
    assert (len(mine), len(theirs)) == (2, 3)
    assert sorted(ids(mine) + ids(theirs)) == sorted(m.id for m in sent)
    assert len(broker.ack(mine)) == 2 and len(other.ack(theirs)) == 3


def test_prefetch_bounds_what_a_process_holds_unacked(folder: Path) -> None:
    """``prefetch=1``: one message at a time, whatever the batch asks (where a killed
    process's messages are lost, only the running one is)."""
    with override_settings(TASKS_BROKER_TRANSPORT_OPTIONS=FAST):
        broker = KombuBroker(f"filesystem://{folder}?prefetch=1")
    try:
        broker.publish([message() for _ in range(3)])
        [first] = broker.fetch(["default"], "w1", 10, 30)
        assert broker.fetch(["default"], "w1", 10, 30) == []  # one held unacked
        broker.ack([first])
        assert len(broker.fetch(["default"], "w1", 10, 30)) == 1
    finally:
        broker.close()


def test_release_hands_back_to_any_consumer(broker: KombuBroker, other: KombuBroker) -> None:
    sent = message()
    broker.publish([sent])
    [delivery] = broker.fetch(["default"], "w1", 10, 30)
    assert other.fetch(["default"], "w2", 10, 30) == []
    assert broker.release([delivery]) == 1
    assert broker.ack([delivery]) == []  # settled already
    [again] = other.fetch(["default"], "w2", 10, 30)
    assert ids([again]) == [sent.id]
    assert other.ack([again]) == [again]


def test_a_closed_connection_hands_back_what_it_held_and_acks_nothing(
        broker: KombuBroker, other: KombuBroker) -> None:
    """A worker that stops, even on an error, closes its connection: what it received and
    did not ack goes back to the queue; an ack for it afterwards is refused."""
    sent = message()
    other.publish([sent])
    [delivery] = broker.fetch(["default"], "w1", 10, 30)
    assert broker.confirm([delivery], 30) == [delivery]
    broker.close()
    assert broker.confirm([delivery], 30) == []
    assert broker.ack([delivery]) == []
    [again] = other.fetch(["default"], "w2", 10, 30)
    assert ids([again]) == [sent.id]
    other.ack([again])


def test_a_forked_child_closing_its_copy_hands_back_nothing_of_its_parent(
        broker: KombuBroker, other: KombuBroker) -> None:
    """Closing the parent's channel in a child would put back what the parent holds (and
    runs): the child only forgets its copy."""
    other.publish([message()])
    [delivery] = broker.fetch(["default"], "w1", 10, 30)
    pid = os.fork()
    if pid == 0:  # the child: what a pool process does first
        broker.close()
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    assert broker.ack([delivery]) == [delivery]
    assert other.fetch(["default"], "w2", 10, 30) == []


def test_wait_wakes_on_a_message_and_times_out_otherwise(
        broker: KombuBroker, other: KombuBroker) -> None:
    assert broker.fetch(["default"], "w1", 1, 30) == []
    started = time.monotonic()
    assert broker.wait(["default"], 0.2) is False
    assert 0.15 < time.monotonic() - started < 2
    other.publish([message()])
    assert broker.wait(["default"], 3) is True
    [delivery] = broker.fetch(["default"], "w1", 1, 30)
    broker.ack([delivery])


def test_queues_are_apart(broker: KombuBroker, other: KombuBroker) -> None:
    a, b = message("a"), message("b")
    other.publish([a, b])
    [only_b] = broker.fetch(["b"], "w1", 10, 30)
    assert (ids([only_b]), only_b.queue) == ([b.id], "b")
    assert broker.depths(["a", "b"]) == {"a": 1, "b": 0}
    broker.ack([only_b])


def test_depths_counts_and_purge(broker: KombuBroker) -> None:
    broker.publish([message() for _ in range(3)])
    assert broker.depths(["default"]) == {"default": 3}
    assert broker.depths() == {"default": 3}  # the queues this process declared
    assert broker.purge("default") == Purged(3)
    assert broker.depths(["default"]) == {"default": 0}
    assert broker.ping() is True


@pytest.mark.django_db(transaction=True)
def test_queue_counts_and_requeue_through_the_outbox(broker: KombuBroker) -> None:
    """A retry's delay waits in the outbox, in the transaction that acks the delivery."""
    sent = message()
    broker.publish([sent])
    [delivery] = broker.fetch(["default"], "w1", 10, 30)
    assert broker.requeue(delivery, sent.replace(retries=1), 60) is True
    assert broker.queue_counts(["default"]) == {"default": QueueCounts(0, 1, None)}
    assert broker.requeue(delivery, sent.replace(retries=2), 60) is False  # settled
    assert broker.queue_counts() == {"default": QueueCounts(0, 1, None)}


def test_counting_a_queue_leaves_no_transaction_open_on_sqlalchemy() -> None:
    """kombu's SQLAlchemy transport counts in a transaction it leaves open, whose lock a
    change to its tables (a migration, a DROP) would wait for: the broker ends it."""
    import sqlalchemy

    with schema_of_its_own() as (url, engine):
        broker = KombuBroker(url)
        try:
            broker.publish([message()])
            assert broker.depths(["default"]) == {"default": 1}
            schema = url.rsplit("application_name=", 1)[1]
            with engine.connect() as connection:
                states = connection.execute(sqlalchemy.text(
                    "SELECT state FROM pg_stat_activity WHERE application_name = :name"),
                    {"name": schema}).scalars().all()
        finally:
            broker.close()  # ends a transaction left open too: the schema can be dropped
        assert states and "idle in transaction" not in states, states


def test_an_unreachable_service_fails_fast_without_the_password() -> None:
    broker = KombuBroker("kombu+amqp://guest:s3cret-pw@127.0.0.1:1//")
    assert "s3cret-pw" not in broker.describe()
    started = time.monotonic()
    with pytest.raises(KombuUnreachable) as info:
        broker.publish([message()])
    assert time.monotonic() - started < 5
    assert "s3cret-pw" not in str(info.value)
    assert "127.0.0.1:1" in str(info.value)
    assert isinstance(info.value, ConnectionError)


# -- a transport that pushes: kombu's py-amqp, against RabbitMQ ----------------------------


@pytest.fixture
def pushed() -> Iterator[tuple[KombuBroker, str]]:
    require_service("RabbitMQ", "127.0.0.1", 5672)
    queue = f"kombu-{uuid.uuid4().hex[:10]}"
    broker = KombuBroker("kombu+amqp://guest:guest@127.0.0.1:5672//?prefetch=3")
    yield broker, queue
    session, _ = broker._publisher()
    session.channel.queue_delete(queue)
    broker.close()


def test_a_transport_that_pushes_sends_up_to_the_prefetch_ahead(
        pushed: tuple[KombuBroker, str]) -> None:
    broker, queue = pushed
    assert broker.window == 3 and broker.wait_lateness == 0.0
    sent = [message(queue) for _ in range(5)]
    broker.publish(sent)
    assert broker.wait([queue], 3) is True
    first = broker.fetch([queue], "w1", 10, 30)
    assert 1 <= len(first) <= 3  # no more than the prefetch before an ack
    got = list(first)
    broker.ack(first)
    deadline = time.monotonic() + 5
    while len(got) < 5 and time.monotonic() < deadline:
        broker.wait([queue], 0.5)
        more = broker.fetch([queue], "w1", 10, 30)
        broker.ack(more)
        got += more
    assert sorted(ids(got)) == sorted(m.id for m in sent)
    assert broker.depths([queue]) == {queue: 0}
