"""Celery's protocol v2 as AMQP and kombu's transports carry it: the envelope's headers as
message headers, ``[args, kwargs, embed]`` as a JSON body, the id as ``correlation_id``
(the RabbitMQ broker, ``amqp.py``, and kombu's other transports, ``kombu_transport.py``).
"""

from __future__ import annotations

import json
from typing import Any

from .. import serialization
from ..exceptions import DecodeError
from ..message import Message

#: Headers RabbitMQ sets on a delivery: never carried into the envelope, so a message
#: published again (a retry) does not take them along.
_BROKER_HEADERS = ("x-delivery-count", "x-death", "x-first-death-", "x-last-death-",
                   "x-acquired-count")


def outgoing(message: Message) -> tuple[str, dict[str, Any]]:
    """The JSON body and the AMQP headers of ``message``, Celery's way."""
    envelope = json.loads(message.encode())  # plain JSON values: what AMQP tables carry
    return json.dumps(envelope["body"], separators=(",", ":")), envelope["headers"]


def incoming(raw: bytes | str, headers: dict[str, Any], properties: dict[str, Any],
             queue: str) -> tuple[dict[str, Any] | None, str]:
    """The envelope ``Message.from_envelope`` reads, put together from a delivery's parts,
    and the body's text. A body that is not JSON for a task, or a header that holds a lone
    surrogate, comes back with no envelope and as text: the worker decodes the text and
    rejects the message, with the reason."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    try:
        body = serialization.loads(text)
    except DecodeError:
        return None, text
    if isinstance(body, dict) and "headers" in body:  # a whole envelope as the body
        return body, text
    kept = {k: v for k, v in headers.items() if not str(k).startswith(_BROKER_HEADERS)}
    envelope = {
        "headers": kept,
        "properties": {
            "correlation_id": properties.get("correlation_id"),
            "content_type": properties.get("content_type"),
            "content_encoding": properties.get("content_encoding"),
            "priority": properties.get("priority") or 0,
            "delivery_info": {"exchange": "", "routing_key": queue},
        },
        "body": body,
    }
    if surrogate_in(kept):  # py-amqp reads header text with "surrogatepass"
        return None, json.dumps(envelope, default=repr)
    return envelope, text


def surrogate_in(headers: dict[str, Any]) -> bool:
    """True if a header's text (at any depth) holds a lone surrogate, which no database
    stores. The names and top-level texts are joined and looked at once: cheap when they
    are ASCII, as they nearly always are."""
    texts = [key for key in headers if key.__class__ is str]
    nested: list[Any] = []
    for value in headers.values():
        if value.__class__ is str:
            texts.append(value)
        elif isinstance(value, dict | list | tuple):
            nested.append(value)
    joined = "".join(texts)
    if not joined.isascii() and serialization.unencodable(joined):
        return True
    return bool(nested) and serialization.unencodable_in(nested)
