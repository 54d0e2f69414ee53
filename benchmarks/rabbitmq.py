"""RabbitMQ for the benchmark's third table: the URL, the queues each side uses (names nothing
else uses), and the benchmark's own client, which counts the messages ready in a queue and
deletes the queues before and after every measurement (no management plugin needed).

Counting over AMQP sees only the messages ready in a queue (a passive ``queue.declare``), not
those delivered to a consumer and not acked yet: RabbitMQ tells that only to its management
API or ``rabbitmqctl``, both too slow to poll.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

AMQP_URL = os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
#: django_tasks' queue (its ``TASKS_DEFAULT_QUEUE`` in the benchmark; quorum, its default).
OURS_QUEUE = "bench.django_tasks"
#: Celery's queue and the direct exchange of that name Celery declares beside it (classic,
#: Celery's default).
CELERY_QUEUE = "bench.celery"

_client: Any = None  # kombu.Connection (py-amqp); no stubs
_open: Any = None  # its channel


def _channel() -> Any:
    """The benchmark's channel, opened on first use."""
    global _client, _open
    if _client is None:
        import kombu

        connection = kombu.Connection(AMQP_URL, connect_timeout=5, heartbeat=0)
        connection.ensure_connection(max_retries=1)
        _client, _open = connection, None
    if _open is None or not _open.is_open:  # an error closes a channel: open another
        _open = _client.channel()
    return _open


def _reconnect() -> None:
    global _client, _open
    if _client is not None:
        with contextlib.suppress(Exception):
            _client.close()
    _client = _open = None


def ready(queue: str) -> int:
    """Messages ready in ``queue`` (0 when it does not exist)."""
    import amqp.exceptions

    try:
        return int(_channel().queue_declare(queue=queue, passive=True).message_count)
    except amqp.exceptions.NotFound:  # the server closed the channel with it
        return 0


def delete(queue: str, exchange: str | None = None) -> None:
    """Delete ``queue`` (and ``exchange``) with whatever they hold; missing ones are fine."""
    import amqp.exceptions

    for kind, name in (("queue", queue), ("exchange", exchange)):
        if not name:
            continue
        try:
            channel = _channel()
            if kind == "queue":
                channel.queue_delete(queue=name)
            else:
                channel.exchange_delete(exchange=name)
        except amqp.exceptions.NotFound:  # the channel closed; the next call opens one
            pass


def clean() -> None:
    """Both sides' queues gone: before and after every measurement."""
    delete(OURS_QUEUE)
    delete(CELERY_QUEUE, CELERY_QUEUE)


def server_version() -> str:
    _channel()
    return str(_client.connection.server_properties.get("version", "-"))


def problem() -> str | None:
    """None when RabbitMQ answers at ``BENCH_AMQP_URL`` (its benchmark queues deleted), else
    why not."""
    try:
        clean()
    except Exception as exc:  # noqa: BLE001 - no RabbitMQ: no RabbitMQ columns
        _reconnect()
        return f"RabbitMQ at {masked()} not reachable ({type(exc).__name__})"
    return None


def masked() -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(AMQP_URL)
    if parts.password:
        return AMQP_URL.replace(f":{parts.password}@", ":**@", 1)
    return AMQP_URL
