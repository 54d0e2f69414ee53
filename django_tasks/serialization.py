"""JSON with the extra types Celery's JSON carries, tagged so they come back as themselves.

``bytes``, ``datetime``, ``date``, ``time``, ``UUID`` and ``Decimal`` survive a round trip,
tagged as ``{"__type__": ..., "__value__": ...}`` exactly as kombu's JSON serializer (5.3 and
later) tags them, so Celery clients and workers sharing a queue with ours read the same
values: bytes that are UTF-8 as ``"bytes"`` with the text, other bytes as ``"base64"``, a
UUID as ``{"hex": ..., "version": ...}``. As in kombu, an object with a ``__json__()`` method
is sent as what it returns, and a lazy translation string as its text. Anything else is an
:class:`EncodeError` at ``delay()``, and so is what JSON or a database cannot carry
faithfully: NaN and infinities, strings with lone surrogates (they have no UTF-8 form),
integers past Python's 4,300-digit conversion limit, and nesting deeper than the
interpreter's recursion limit. On the way in, the same defects are a :class:`DecodeError`,
so a hand-written or foreign message cannot smuggle them into a worker either.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django.utils.functional import Promise

from .exceptions import DecodeError, EncodeError


def _uuid(value: Any) -> uuid.UUID:
    """kombu's ``{"hex": ..., "version": ...}``, or the plain string that results stored
    before it still hold. The hex alone is the UUID (its version bits are in it)."""
    if isinstance(value, str):
        return uuid.UUID(value)
    if not isinstance(value, dict) or not isinstance(value.get("hex"), str):
        raise TypeError("expected {\"hex\": ..., \"version\": ...} or a string")
    return uuid.UUID(hex=value["hex"])


def _checked(decode: Callable[[str], Any]) -> Callable[[Any], Any]:
    def decode_text(value: Any) -> Any:
        if not isinstance(value, str):
            raise TypeError(f"expected a string, got {type(value).__name__}")
        return decode(value)
    return decode_text


_DECODERS: dict[str, Callable[[Any], Any]] = {
    "datetime": _checked(dt.datetime.fromisoformat),
    "date": _checked(lambda v: dt.datetime.fromisoformat(v).date()),  # as kombu reads it
    "time": _checked(dt.time.fromisoformat),
    "uuid": _uuid,
    "decimal": _checked(Decimal),
    "bytes": _checked(lambda v: v.encode("utf-8")),
    "base64": _checked(lambda v: base64.b64decode(v, validate=True)),
}


def _tagged(kind: str, value: Any) -> dict[str, Any]:
    return {"__type__": kind, "__value__": value}


def _default(value: Any) -> Any:
    """Called by ``json`` only for what it cannot encode itself: plain payloads never come
    here, so the extra types cost nothing on the usual ``delay()``."""
    reducer = getattr(value, "__json__", None)
    if reducer is not None:
        return reducer()
    if isinstance(value, dt.datetime):  # before date: a datetime is a date too
        return _tagged("datetime", value.isoformat())
    if isinstance(value, dt.date):
        return _tagged("date", value.isoformat())
    if isinstance(value, dt.time):
        return _tagged("time", value.isoformat())
    if isinstance(value, uuid.UUID):
        return _tagged("uuid", {"hex": value.hex, "version": value.version})
    if isinstance(value, Decimal):
        return _tagged("decimal", str(value))
    if isinstance(value, bytes):
        try:
            return _tagged("bytes", value.decode("utf-8"))
        except UnicodeDecodeError:
            return _tagged("base64", base64.b64encode(value).decode("ascii"))
    if isinstance(value, Promise):  # gettext_lazy(): its text in the current language
        return str(value)
    if isinstance(value, set | frozenset):
        return list(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _object_hook(obj: dict[str, Any]) -> Any:
    kind = obj.get("__type__")
    if kind is not None and len(obj) == 2 and "__value__" in obj and kind in _DECODERS:
        value = obj["__value__"]
        try:
            return _DECODERS[kind](value)
        except (TypeError, ValueError, ArithmeticError, binascii.Error) as exc:
            shown = repr(value)
            shown = shown if len(shown) <= 80 else shown[:77] + "..."
            raise DecodeError(f"bad tagged {kind} value {shown}: {exc}") from exc
    return obj


_PLAIN = ("Pass plain data (str, int, float, bool, None, list, dict, bytes, datetime, date, "
          "time, UUID, Decimal), e.g. a model's primary key instead of the instance.")


def dumps(value: Any, what: str = "value") -> str:
    """Serialize ``value``; ``what`` names it in the error (``"arguments of add"``).

    The text is UTF-8-clean: a string holding a lone surrogate (from bytes decoded with
    ``errors="surrogateescape"``, say) is an :class:`EncodeError` here, not a failure in
    whichever database or broker would have stored it."""
    try:
        text = _ENCODER.encode(value)
    except RecursionError:
        raise EncodeError(f"{what} cannot be serialized to JSON: it is nested too deeply "
                          f"(or refers to itself). {_PLAIN}") from None
    except (TypeError, ValueError) as exc:
        raise EncodeError(f"{what} cannot be serialized to JSON: {exc}. {_PLAIN}") from exc
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise EncodeError(
            f"{what} cannot be serialized to JSON: a string holds the lone surrogate "
            f"{text[exc.start]!r}, which has no UTF-8 form. Decode bytes with a real "
            "encoding (or pass the bytes themselves)."
        ) from None
    return text


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


# Made once: ``json.dumps``/``json.loads`` with options build a new encoder or decoder on
# every call (these are stateless between calls, so threads share them).
_ENCODER = json.JSONEncoder(default=_default, separators=(",", ":"), allow_nan=False,
                            ensure_ascii=False)
_TAGGED = json.JSONDecoder(object_hook=_object_hook, parse_constant=_reject_constant)
_UNTAGGED = json.JSONDecoder(parse_constant=_reject_constant)


def loads(text: str | bytes) -> Any:
    try:
        if isinstance(text, bytes | bytearray):
            text = bytes(text).decode("utf-8")
        # Only text that holds a tag needs the object hook, which runs for every object.
        value = (_TAGGED if "__type__" in text else _UNTAGGED).decode(text)
    except RecursionError:
        raise DecodeError("not valid JSON: nested too deeply to decode") from None
    except (TypeError, ValueError) as exc:
        raise DecodeError(f"not valid JSON: {exc}") from exc
    if _holds_surrogate(text, value):
        raise DecodeError("not valid JSON for a task: a string holds a lone surrogate "
                          "(U+D800 to U+DFFF), which has no UTF-8 form")
    return value


# A \\uD800-\\uDFFF escape: half of a pair (an emoji from an ASCII-only encoder) or a lone one.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _holds_surrogate(text: str, value: Any) -> bool:
    """Cheap for the usual text: only one that escapes a surrogate has its strings looked at."""
    if not text.isascii() and unencodable(text):
        return True
    if "\\u" not in text or not _SURROGATE_ESCAPE.search(text):
        return False
    return unencodable_in(value)


def unencodable_in(value: Any) -> bool:
    """True if a text in ``value`` (at any depth of its dicts' keys and values, lists and
    tuples) has no UTF-8 form."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not item.isascii() and unencodable(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return False


def unencodable(text: str) -> bool:
    """True if ``text`` has no UTF-8 form (it holds a lone surrogate)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def storable_text(text: str | None) -> str | None:
    """``text`` as every database can store it: NUL and lone surrogates escaped.

    Tracebacks and exception messages are free text; PostgreSQL refuses NUL in text columns
    and no UTF-8 database takes a lone surrogate."""
    if text is None or (text.isascii() and "\x00" not in text):
        return text
    text = text.replace("\x00", "\\x00")
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
