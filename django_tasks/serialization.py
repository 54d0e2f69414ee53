"""JSON with the few extra types tasks commonly pass, tagged so they come back as themselves.

``datetime``, ``date``, ``time``, ``UUID`` and ``Decimal`` survive a round trip, tagged as
``{"__type__": ..., "__value__": ...}``, the shape kombu's JSON serializer uses for datetimes
and decimals (kombu encodes UUIDs differently; interoperability with Celery is not claimed
yet). Anything else is an :class:`EncodeError` at ``delay()``.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from decimal import Decimal
from typing import Any

from .exceptions import DecodeError, EncodeError

_DECODERS = {
    "datetime": dt.datetime.fromisoformat,
    "date": dt.date.fromisoformat,
    "time": dt.time.fromisoformat,
    "uuid": uuid.UUID,
    "decimal": Decimal,
}


def _default(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return {"__type__": "datetime", "__value__": value.isoformat()}
    if isinstance(value, dt.date):
        return {"__type__": "date", "__value__": value.isoformat()}
    if isinstance(value, dt.time):
        return {"__type__": "time", "__value__": value.isoformat()}
    if isinstance(value, uuid.UUID):
        return {"__type__": "uuid", "__value__": str(value)}
    if isinstance(value, Decimal):
        return {"__type__": "decimal", "__value__": str(value)}
    if isinstance(value, set | frozenset):
        return list(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _object_hook(obj: dict[str, Any]) -> Any:
    kind = obj.get("__type__")
    if kind is not None and len(obj) == 2 and "__value__" in obj and kind in _DECODERS:
        value = obj["__value__"]
        try:
            if not isinstance(value, str):
                raise TypeError(f"expected a string, got {type(value).__name__}")
            return _DECODERS[kind](value)
        except (TypeError, ValueError, ArithmeticError) as exc:
            raise DecodeError(f"bad tagged {kind} value {value!r}: {exc}") from exc
    return obj


def dumps(value: Any, what: str = "value") -> str:
    """Serialize ``value``; ``what`` names it in the error (``"arguments of add"``)."""
    try:
        return json.dumps(value, default=_default, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise EncodeError(
            f"{what} cannot be serialized to JSON: {exc}. Pass plain data (str, int, float, "
            "bool, None, list, dict, datetime, date, time, UUID, Decimal), e.g. a model's "
            "primary key instead of the instance."
        ) from exc


def loads(text: str | bytes) -> Any:
    try:
        return json.loads(text, object_hook=_object_hook)
    except (TypeError, ValueError) as exc:
        raise DecodeError(f"not valid JSON: {exc}") from exc
