"""The one publishing path: ``delay()``, ``send_task()``, the beat and the admin's re-run all
hand their messages to the broker here.

With the result store beside the broker, each message's PENDING result row is written with
it, in the caller's transaction on the database broker (one statement on PostgreSQL), so a
task never runs before the commit and a rollback leaves neither behind. A broker that cannot
join the transaction (Redis, RabbitMQ) gets the messages through the outbox (``outbox.py``)
when a transaction is open, and at once otherwise; when that publish fails, the PENDING
rows written for it are deleted again, so that none waits for a message that never came.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Sequence
from contextlib import suppress

from django.db import transaction

from . import clock, outbox
from .brokers.base import Broker
from .conf import get_broker, get_result_store, task_settings
from .message import Message
from .result import AsyncResult
from .results.base import ResultStore

logger = logging.getLogger("django_tasks.publishing")


def publish(message: Message) -> AsyncResult:
    """Record the task as PENDING and hand it to the broker, in the caller's transaction."""
    publish_many([message])
    return AsyncResult(message.id, message.task, published_at=time.monotonic())


def publish_chunked(messages: Sequence[Message]) -> None:
    """Publish any number of messages in chunks (``Broker.publish_batch()``); on the
    database broker in one transaction (all or none). On a broker outside the database,
    each chunk is on its way to the broker (``Broker.start_publish()``) while the next
    chunk's PENDING rows are written: a failure leaves the chunks before it published (and
    the chunk after it, when it was on its way), and the rows of a chunk whose publish
    failed are deleted, as a failed publish's are."""
    broker = get_broker()
    alias = broker.database_alias
    size = broker.publish_batch()
    chunks = [messages[start:start + size] for start in range(0, len(messages), size)]
    if broker.capabilities.transactional and alias:
        with transaction.atomic(using=alias):
            for chunk in chunks:
                publish_many(chunk)
        return
    unfinished: list[Callable[[], None]] = []
    try:
        for chunk in chunks:
            unfinished.append(start_publish(chunk))
            if len(unfinished) > 1:
                unfinished.pop(0)()
    except BaseException:
        for end in unfinished:  # their replies read, their connections given back
            with suppress(Exception):
                end()
        raise
    for end in unfinished:
        end()


def publish_many(messages: Sequence[Message], *, pending_rows: bool = True) -> None:
    """Publish many messages at once (their PENDING rows and queue rows in batches).

    ``pending_rows=False`` for messages whose result row exists already (a retry of a task
    acked before it ran: its RETRY row is written beside it)."""
    start_publish(messages, pending_rows=pending_rows, later=False)()


def start_publish(messages: Sequence[Message], *, pending_rows: bool = True,
                  later: bool = True) -> Callable[[], None]:
    """:func:`publish_many` begun: the messages' PENDING rows are written (and every path
    but the last publish is done) when it returns the function that ends the publish
    (``Broker.start_publish()``), which the caller must call, even after an error.
    ``later=False``: the broker's publish is done too (``publish_many``: a ``delay()``
    has nothing to do meanwhile)."""
    if not messages:
        return _ended
    store = get_result_store() if pending_rows and task_settings.STORE_PENDING else None
    broker = get_broker()
    if not broker.capabilities.native_delays:
        messages = _hold_delayed(broker, messages, store)
        if not messages:
            return _ended
    pending = [m for m in messages if not m.ignore_result] if store is not None else []
    if (store is not None and len(pending) == len(messages)
            and store.database_alias == broker.database_alias
            and broker.publish_with_pending(messages)):
        return _ended
    if outbox.needed(broker, broker.home_alias):
        if store is not None and pending:
            store.create_pending(pending)
        outbox.write(broker, messages, broker.home_alias)
        return _ended
    alias = broker.database_alias
    if broker.capabilities.transactional and alias:
        with transaction.atomic(using=alias):
            if store is not None and pending:
                store.create_pending(pending)
            broker.publish(messages)
        return _ended
    if store is not None and pending:
        # A broker outside the database holds the message itself: its row need not wait
        # for the disk (the worker writes the outcome with or without it).
        store.create_pending(pending, durable=broker.capabilities.transactional)
    try:
        if not later:
            broker.publish(messages)
            return _ended
        end = broker.start_publish(messages)
    except Exception:
        _unpublished(store, pending)
        raise
    if store is None or not pending:
        return end
    return functools.partial(_end_or_unpublished, end, store, pending)


def _end_or_unpublished(end: Callable[[], None], store: ResultStore,
                        pending: Sequence[Message]) -> None:
    try:
        end()
    except Exception:
        _unpublished(store, pending)
        raise


def _unpublished(store: ResultStore | None, pending: Sequence[Message]) -> None:
    """The publish of ``pending`` failed, after their PENDING rows were written: delete
    those rows that are still PENDING, so that no row waits for a message that will never
    come. A message the broker took after all (its reply lost) runs all the same: the
    worker writes its row again with the outcome."""
    if store is None or not pending:
        return
    try:
        store.drop_pending([m.id for m in pending])
    except Exception:
        logger.warning("The publish of %d task(s) failed, and so did deleting their PENDING "
                       "result rows: they stay PENDING (e.g. %s)", len(pending), pending[0].id,
                       exc_info=True)


def _ended() -> None:
    """The end of a publish done already."""


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
