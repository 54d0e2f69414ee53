"""The one publishing path: ``delay()``, ``send_task()``, the beat and the admin's re-run all
hand their messages to the broker here.

With the result store beside the broker, each message's PENDING result row is written with
it, in the caller's transaction on the database broker (one statement on PostgreSQL), so a
task never runs before the commit and a rollback leaves neither behind. A broker that cannot
join the transaction (Redis, RabbitMQ) gets the messages through the outbox (``outbox.py``)
when a transaction is open, and at once otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext

from django.db import transaction

from . import clock, outbox
from .brokers.base import Broker
from .conf import get_broker, get_result_store, task_settings
from .message import Message
from .result import AsyncResult
from .results.base import ResultStore


def publish(message: Message) -> AsyncResult:
    """Record the task as PENDING and hand it to the broker, in the caller's transaction."""
    publish_many([message])
    return AsyncResult(message.id, message.task)


def publish_chunked(messages: Sequence[Message]) -> None:
    """Publish any number of messages in chunks (``Broker.publish_batch()``); on the
    database broker in one transaction (all or none)."""
    broker = get_broker()
    alias = broker.database_alias
    with transaction.atomic(using=alias) if broker.capabilities.transactional and alias \
            else nullcontext():
        size = broker.publish_batch()
        for start in range(0, len(messages), size):
            publish_many(messages[start:start + size])


def publish_many(messages: Sequence[Message], *, pending_rows: bool = True) -> None:
    """Publish many messages at once (their PENDING rows and queue rows in batches).

    ``pending_rows=False`` for messages whose result row exists already (a retry of a task
    acked before it ran: its RETRY row is written beside it)."""
    if not messages:
        return
    store = get_result_store() if pending_rows and task_settings.STORE_PENDING else None
    broker = get_broker()
    if not broker.capabilities.native_delays:
        messages = _hold_delayed(broker, messages, store)
        if not messages:
            return
    pending = [m for m in messages if not m.ignore_result] if store is not None else []
    if (store is not None and len(pending) == len(messages)
            and store.database_alias == broker.database_alias
            and broker.publish_with_pending(messages)):
        return
    if outbox.needed(broker, broker.home_alias):
        if store is not None and pending:
            store.create_pending(pending)
        outbox.write(broker, messages, broker.home_alias)
        return
    alias = broker.database_alias
    transactional = broker.capabilities.transactional
    with transaction.atomic(using=alias) if transactional and alias else nullcontext():
        if store is not None and pending:
            # A broker outside the database holds the message itself: its row need not
            # wait for the disk (the worker writes the outcome with or without it).
            store.create_pending(pending, durable=transactional)
        broker.publish(messages)


def _hold_delayed(broker: Broker, messages: Sequence[Message],
                  store: ResultStore | None) -> Sequence[Message]:
    """Keep messages not due yet in the outbox, for a broker that cannot delay them; return
    the others."""
    now = clock.now()
    later = [m for m in messages if m.eta is not None and m.eta > now]
    if not later:
        return messages
    with transaction.atomic(using=broker.home_alias):
        if store is not None:
            pending = [m for m in later if not m.ignore_result]
            if pending:
                store.create_pending(pending)
        outbox.hold(later, broker.home_alias)
    return [m for m in messages if not (m.eta is not None and m.eta > now)]
