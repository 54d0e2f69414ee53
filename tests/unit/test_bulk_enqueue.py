"""delay_many() and apply_many(): many calls queued in batches; TASKS_STORE_PENDING."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import override_settings

from django_tasks import shared_task
from django_tasks.conf import get_broker, reset_cache
from django_tasks.message import Message
from django_tasks.models import QueuedMessage, TaskResult


@shared_task(name="unit.bulk.add")
def add(x: int, y: int = 0) -> int:
    return x + y


@pytest.fixture
def database_tasks(db: None) -> Iterator[None]:
    with override_settings(TASKS_BROKER_URL="django://", TASKS_RESULT_BACKEND="django://",
                           TASKS_ALWAYS_EAGER=False):
        reset_cache()
        yield
    reset_cache()


def queued_messages() -> list[Message]:
    return [Message.decode(body) for body in
            QueuedMessage.objects.order_by("id").values_list("body", flat=True)]


def test_delay_many_queues_one_message_per_call(database_tasks: None) -> None:
    results = add.delay_many([(1, 2), (3, 4), [5]])
    messages = queued_messages()
    assert [m.id for m in messages] == [r.id for r in results]
    assert [m.args for m in messages] == [(1, 2), (3, 4), (5,)]
    assert TaskResult.objects.filter(state="PENDING").count() == 3


def test_apply_many_takes_kwargs_and_shared_options(database_tasks: None) -> None:
    add.apply_many([((1,), {"y": 2}), ((3,), {})], queue="bulk", priority=7, countdown=60)
    messages = queued_messages()
    assert [(m.kwargs, m.queue, m.priority) for m in messages] == [
        ({"y": 2}, "bulk", 7), ({}, "bulk", 7)]
    assert all(m.eta is not None for m in messages)


def test_more_than_a_chunk_is_written_in_several_statements(database_tasks: None) -> None:
    count = min(get_broker().publish_batch(), 1000) * 2 + 17
    results = add.delay_many((i, i) for i in range(count))
    assert len({r.id for r in results}) == count
    assert QueuedMessage.objects.count() == count == TaskResult.objects.count()
    assert get_broker().depths() == {"default": count}


def test_one_bad_call_queues_nothing(database_tasks: None) -> None:
    with pytest.raises(TypeError, match=r"unit\.bulk\.add"):
        add.delay_many([(1, 2)] * 1500 + [(1, 2, 3)])
    assert not QueuedMessage.objects.exists() and not TaskResult.objects.exists()


def test_one_id_for_many_calls_is_refused(database_tasks: None) -> None:
    with pytest.raises(TypeError, match="an id of its own"):
        add.apply_many([((1,), {})], task_id="same")


def test_eager_mode_runs_each_call(memory_tasks: None, settings: Any) -> None:
    settings.TASKS_ALWAYS_EAGER = True
    assert [r.get() for r in add.delay_many([(1, 2), (3, 4)])] == [3, 7]


def test_without_pending_rows_only_the_messages_are_written(database_tasks: None,
                                                          settings: Any) -> None:
    settings.TASKS_STORE_PENDING = False
    result = add.delay(1, 2)
    add.delay_many([(3, 4)])
    assert QueuedMessage.objects.count() == 2
    assert not TaskResult.objects.exists()
    assert result.state == "PENDING" and not result.exists()


seen: list[bool] = []


@shared_task(name="unit.bulk.sees_its_row", bind=True)
def sees_its_row(self: Any) -> None:
    seen.append(TaskResult.objects.filter(task_id=self.request.id).exists())


def test_without_pending_rows_the_worker_writes_them_as_it_takes_the_batch(
        database_tasks: None, settings: Any) -> None:
    import threading

    from django_tasks.worker.consumer import Consumer

    settings.TASKS_STORE_PENDING = False
    seen.clear()
    results = sees_its_row.delay_many([()] * 3)
    assert not TaskResult.objects.exists()
    consumer = Consumer(queues=["default"], owner="t/1", hostname="t@h", prefetch=8, lease=30,
                        stop=threading.Event())
    while QueuedMessage.objects.exists():
        consumer.process(get_broker().fetch(["default"], "t/1", 8, 30))
    assert seen == [True, True, True]
    assert {r.state for r in results} == {"SUCCESS"}



def test_postgresql_copies_a_batch_in_with_the_rows_a_statement_writes(
        database_tasks: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """From ``COPY_FROM`` messages on, PostgreSQL is given the rows by COPY: the same rows,
    field for field, as the one-statement insert of a few writes. (Elsewhere both batches
    are INSERTed, and the rows are the same too.)"""
    from django_tasks.calling import build_message
    from django_tasks.results import database as database_store

    eta = dt.datetime(2031, 1, 2, 3, 4, 5, tzinfo=dt.UTC)

    def messages(tag: str) -> list[Message]:
        return [build_message("unit.bulk.add", (i,), {"y": "é\t\\n"}, task_id=f"{tag}-{i}",
                              queue="bulk", priority=i % 10, group_id="g-1",
                              parent_id="p-1", root_id="r-1", eta=eta if i % 3 else None)
                for i in range(150)]

    def written(tag: str) -> list[tuple[Any, ...]]:
        queued = {task_id: rest for task_id, *rest in QueuedMessage.objects.values_list(
            "task_id", "queue", "priority", "body", "deliveries", "runs", "lease_owner",
            "visible_at")}
        rows = TaskResult.objects.order_by("id").values_list(
            "task_id", "task_name", "state", "args", "kwargs", "queue", "priority", "worker",
            "root_id", "parent_id", "group_id", "attempts", "retries", "date_done")
        return [(task_id.removeprefix(f"{tag}-"), *rest, *queued[task_id][:2],
                 queued[task_id][2].replace(f'"{tag}-', '"'), *queued[task_id][3:-1],
                 queued[task_id][-1] == eta)
                for task_id, *rest in rows if task_id.startswith(f"{tag}-")]

    from django_tasks.publishing import publish_many

    monkeypatch.setattr(database_store, "COPY_FROM", 1000)
    publish_many(messages("insert"))
    by_statement = written("insert")
    monkeypatch.setattr(database_store, "COPY_FROM", 100)
    publish_many(messages("copy"))
    assert written("copy") == by_statement
    assert len(by_statement) == 150 and sum(row[-1] for row in by_statement) == 100
    assert by_statement[1][4] == '{"y":"é\\t\\\\n"}'


def test_postgresql_copies_in_the_pending_rows_of_a_batch_for_other_brokers(
        database_tasks: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The result store's own path (Redis and RabbitMQ write PENDING rows beside a publish):
    on PostgreSQL a batch is copied in, with the same rows as the INSERT of a few."""
    from django_tasks.calling import build_message
    from django_tasks.conf import get_result_store
    from django_tasks.results import database as database_store

    def rows(tag: str) -> list[tuple[Any, ...]]:
        return [(task_id.removeprefix(tag), root_id.removeprefix(tag), *rest)
                for task_id, root_id, *rest in
                TaskResult.objects.filter(task_id__startswith=tag).order_by("id").values_list(
                    "task_id", "root_id", "task_name", "state", "args", "kwargs", "queue",
                    "priority", "parent_id", "group_id", "date_done")]

    store = get_result_store()
    assert store is not None
    for tag, copy_from in (("insert-", 1000), ("copy-", 100)):
        monkeypatch.setattr(database_store, "COPY_FROM", copy_from)
        store.create_pending([build_message("unit.bulk.add", (i,), {"y": "\\t"},
                                            task_id=f"{tag}{i}", priority=i % 10,
                                            group_id="g") for i in range(150)])
    assert rows("copy-") == rows("insert-") and len(rows("copy-")) == 150


@pytest.fixture
def redis_tasks(transactional_db: None) -> Iterator[Any]:
    """A Redis broker on its flushed test database, results in the test database, and no
    transaction open around the test (inside one, publishes go to the outbox)."""
    from .conftest import REDIS_TEST_URL, flushed_redis

    for _ in flushed_redis():  # flushed, and skipped (or failed under CI) without Redis
        with override_settings(TASKS_BROKER_URL=REDIS_TEST_URL,
                               TASKS_RESULT_BACKEND="django://", TASKS_ALWAYS_EAGER=False):
            reset_cache()
            yield get_broker()
        reset_cache()


def test_on_redis_each_chunk_is_queued_with_its_pending_rows(redis_tasks: Any) -> None:
    """Each chunk is on its way to Redis while the next one's rows are written: all arrive."""
    count = redis_tasks.publish_batch() * 2 + 17
    results = add.delay_many((i, i) for i in range(count))
    assert redis_tasks.depths() == {"default": count}
    assert TaskResult.objects.filter(state="PENDING").count() == count
    queued = {d.task_id for d in redis_tasks.fetch(["default"], "w", count, 60)}
    assert queued == {r.id for r in results}
    assert len(redis_tasks._lane._free) >= 1


def test_on_redis_a_failed_chunk_leaves_those_before_it_queued_and_no_reply_unread(
        redis_tasks: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from django_tasks.conf import get_result_store

    store = get_result_store()
    assert store is not None
    written = []
    create_pending = store.create_pending

    def fail_second(messages: Any, **kw: Any) -> None:
        if written:
            raise RuntimeError("the database went away")
        written.append(len(messages))
        create_pending(messages, **kw)

    monkeypatch.setattr(store, "create_pending", fail_second)
    size = redis_tasks.publish_batch()
    with pytest.raises(RuntimeError, match="went away"):
        add.delay_many((i, i) for i in range(size * 3))
    assert written == [size]
    assert redis_tasks.depths() == {"default": size}  # the first chunk, its reply read
    assert TaskResult.objects.count() == size
    assert len(redis_tasks._lane._free) == 1  # given back, ready for the next call
    redis_tasks.publish([Message(id="next", task="unit.bulk.add")])
    assert redis_tasks.depths() == {"default": size + 1}


def test_delay_on_a_redis_that_is_down_fails_and_leaves_no_pending_row(
        transactional_db: None) -> None:
    """The PENDING row is written before the publish; when the publish fails it goes again,
    so that no row waits for a message that never came."""
    from django_tasks.brokers.redis import RedisUnreachable

    from .test_redis_broker import closed_port

    with override_settings(TASKS_BROKER_URL=f"redis://127.0.0.1:{closed_port()}/0",
                           TASKS_RESULT_BACKEND="django://", TASKS_ALWAYS_EAGER=False):
        reset_cache()
        try:
            with pytest.raises(RedisUnreachable):
                add.delay(1, 2)
            with pytest.raises(RedisUnreachable):
                add.delay_many((i, i) for i in range(3))
        finally:
            reset_cache()
    assert not TaskResult.objects.exists()


def test_on_redis_a_chunk_that_failed_has_its_rows_deleted_and_the_others_keep_theirs(
        redis_tasks: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The second chunk's publish fails when it is ended: its rows go; the first chunk was
    queued before it, and the third was on its way and is queued too, both with their
    rows."""
    from django_tasks.brokers.redis import RedisUnreachable

    begun: list[list[str]] = []
    start_publish = redis_tasks.start_publish

    def second_fails(messages: Any) -> Any:
        begun.append([m.id for m in messages])
        if len(begun) != 2:
            return start_publish(messages)

        def lost() -> None:
            raise RedisUnreachable("the connection was lost")
        return lost

    monkeypatch.setattr(redis_tasks, "start_publish", second_fails)
    size = redis_tasks.publish_batch()
    with pytest.raises(RedisUnreachable, match="lost"):
        add.delay_many((i, i) for i in range(size * 3))
    first, second, third = begun
    assert redis_tasks.depths() == {"default": size * 2}
    stored = set(TaskResult.objects.values_list("task_id", flat=True))
    assert stored == {*first, *third}
    assert not stored & set(second)


def test_a_batch_is_the_calls_built_one_by_one_but_for_their_ids(memory_tasks: None) -> None:
    """``build_messages()`` checks the options once and copies the rest from the first
    message: each message is what ``build_message()`` makes of its call, field for field
    and in its encoded text, with an id of its own."""
    from django_tasks.calling import build_message, build_messages

    options: dict[str, Any] = {"queue": "bulk", "priority": 3, "countdown": 60,
                               "expires": 600, "headers": {"h": 1}, "time_limit": 9,
                               "group_id": "g-1", "link": add.s(1)}
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
        ((1,), {"y": 2}), ((3,), {}), ((), {"x": "é"})]
    batch = build_messages(add.name, calls, **options)
    assert len({m.id for m in batch}) == 3
    first = batch[0]
    for message, (args, kwargs) in zip(batch, calls, strict=True):
        alone = build_message(add.name, args, kwargs, task_id=message.id, **options)
        alone = alone.replace(eta=first.eta, expires=first.expires)  # one clock for a batch
        assert message == alone
        assert message.encode() == alone.encode()
    assert all(m.headers == {"h": 1} and m.headers is not first.headers for m in batch[1:])


def test_a_batch_with_routes_routes_each_call_by_its_arguments(memory_tasks: None,
                                                               settings: Any) -> None:
    from django_tasks.calling import build_messages

    def by_size(name: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                options: dict[str, Any], **_: Any) -> dict[str, Any]:
        return {"queue": "big" if args[0] > 10 else "small"}

    settings.TASKS_TASK_ROUTES = (by_size,)
    batch = build_messages(add.name, [((1,), {}), ((50,), {}), ((2,), {})])
    assert [m.queue for m in batch] == ["small", "big", "small"]
    assert [m.queue for m in build_messages(add.name, [((50,), {})], queue="given")] == [
        "given"]


def test_new_ids_are_version_4_uuids_in_their_usual_text() -> None:
    import uuid

    from django_tasks.message import new_ids

    ids = new_ids(2000)
    assert len(set(ids)) == 2000
    for text in ids:
        parsed = uuid.UUID(text)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
        assert str(parsed) == text
    # Every bit but the six fixed ones varies: the variant digit takes all four values.
    assert {text[19] for text in ids} == set("89ab")
    assert new_ids(0) == []
