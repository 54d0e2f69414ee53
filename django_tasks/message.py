"""The wire format: Celery's message protocol v2, JSON-encoded.

A message is an envelope ``{"headers": ..., "properties": ..., "body": [args, kwargs, embed]}``.
Header names follow Celery's (``task``, ``id``, ``eta``, ``expires``, ``retries``, ``root_id``,
``parent_id``, ``group``, ...), so a Celery worker reading the same queue through kombu can
decode it, and the reverse.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import re
import reprlib
import socket
from dataclasses import dataclass, field, replace
from typing import Any

from . import serialization
from .exceptions import DecodeError
from .masking import shown

CONTENT_TYPE = "application/json"


@dataclass(frozen=True, slots=True)
class Message:
    """One task invocation as it travels from producer to worker."""

    id: str
    task: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    queue: str = "default"
    priority: int = 0
    eta: dt.datetime | None = None
    expires: dt.datetime | None = None
    retries: int = 0
    root_id: str | None = None
    parent_id: str | None = None
    group: str | None = None
    ignore_result: bool = False
    #: Celery's ``timelimit`` header: ``(hard, soft)`` seconds for this call, None = default.
    timelimit: tuple[float | None, float | None] = (None, None)
    headers: dict[str, Any] = field(default_factory=dict)
    #: Signatures (Celery's dict shape, ``canvas/``) applied with the task's result when
    #: it succeeds (``link=``), or with its id when it fails (``link_error=``).
    callbacks: tuple[dict[str, Any], ...] = ()
    errbacks: tuple[dict[str, Any], ...] = ()
    #: The rest of a chain, last first (the next task is the last item), as in Celery.
    chain: tuple[dict[str, Any], ...] = ()
    #: The callback of the chord this task is a member of (the chord's id is ``group``).
    chord: dict[str, Any] | None = None
    #: The encoded envelope, once ``encode()`` has made it (``replace()`` starts afresh).
    _encoded: str | None = field(default=None, init=False, compare=False, repr=False)

    def replace(self, **changes: Any) -> Message:
        return replace(self, **changes)

    def to_envelope(self) -> dict[str, Any]:
        shown_args, shown_kwargs = shown(self.task, self.args, self.kwargs)
        headers = {
            **self.headers,
            "lang": "py",
            "task": self.task,
            "id": self.id,
            "shadow": None,
            "eta": self.eta.isoformat() if self.eta else None,
            "expires": self.expires.isoformat() if self.expires else None,
            "group": self.group,
            "group_index": None,
            "retries": self.retries,
            "timelimit": list(self.timelimit),
            "root_id": self.root_id or self.id,
            "parent_id": self.parent_id,
            "argsrepr": _short_repr(shown_args),
            "kwargsrepr": _short_repr(shown_kwargs),
            "origin": origin(),
            "ignore_result": self.ignore_result,
        }
        properties = {
            "correlation_id": self.id,
            "content_type": CONTENT_TYPE,
            "content_encoding": "utf-8",
            "priority": self.priority,
            "delivery_info": {"exchange": "", "routing_key": self.queue},
        }
        embed = {
            "callbacks": list(self.callbacks) or None,
            "errbacks": list(self.errbacks) or None,
            "chain": list(self.chain) or None,
            "chord": self.chord,
        }
        return {"headers": headers, "properties": properties,
                "body": [list(self.args), self.kwargs, embed]}

    def encode(self) -> str:
        """The JSON envelope; made once per message (``delay()`` checks the arguments by
        encoding, and the broker then sends the same text)."""
        if self._encoded is None:
            text = self._plain_text() if self._plain() else serialization.dumps(
                self.to_envelope(), f"arguments of task {self.task!r}")
            object.__setattr__(self, "_encoded", text)
        assert self._encoded is not None
        return self._encoded

    def _plain(self) -> bool:
        """The usual message: no headers of the caller's, no workflow, default time limits,
        and fields of their own types: ``_plain_text()`` writes its envelope."""
        return (not self.headers and not self.callbacks and not self.errbacks
                and not self.chain and self.chord is None and self.timelimit == (None, None)
                and type(self.retries) is int and type(self.priority) is int
                and type(self.ignore_result) is bool)

    def _plain_text(self) -> str:
        """``to_envelope()`` encoded, for a plain message, the same text to the byte: only the
        arguments go through the JSON encoder, the rest is written around them (the encoder
        took two thirds of the time of building a message), and what is the same for every
        call of a task (its name, queue, priority, ...) is written once (``_frame()``)."""
        body = serialization.dumps([list(self.args), self.kwargs],
                                   f"arguments of task {self.task!r}")
        shown_args, shown_kwargs = shown(self.task, self.args, self.kwargs)
        task_id = _string(self.id)
        fields = (self.task, self.eta, self.expires, self.group, self.retries, self.root_id,
                  self.parent_id, origin(), self.ignore_result, self.priority, self.queue)
        # A message with a time of its own (a countdown) has a frame of its own: kept, it
        # would only push out the frames that are used again.
        head, before_root, root, before_args, after_args, before_body = (
            _frame(*fields) if self.eta is None and self.expires is None
            else _frame.__wrapped__(*fields))
        text = "".join((
            head, task_id, before_root, root or task_id, before_args,
            _string(_short_repr(shown_args)), ',"kwargsrepr":', _string(_short_repr(shown_kwargs)),
            after_args, task_id, before_body, body[:-1], _EMBED_NONE))
        if not text.isascii():  # a field the caller made by hand may hold a lone surrogate
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:  # the generic encoding says where, as an EncodeError
                return serialization.dumps(self.to_envelope(), f"arguments of task {self.task!r}")
        return text

    @classmethod
    def decode(cls, raw: str | bytes) -> Message:
        """Parse an encoded envelope; any defect raises :class:`DecodeError` with the reason."""
        envelope = serialization.loads(raw)
        if not isinstance(envelope, dict):
            raise DecodeError("message is not a JSON object")
        return cls.from_envelope(envelope)

    @classmethod
    def from_envelope(cls, envelope: dict[str, Any]) -> Message:
        headers = envelope.get("headers")
        body = envelope.get("body")
        properties = envelope.get("properties") or {}
        if not isinstance(headers, dict):
            raise DecodeError("message has no headers object")
        if not isinstance(properties, dict):
            raise DecodeError("message 'properties' is not an object")
        task_id, name = headers.get("id"), headers.get("task")
        if not isinstance(task_id, str) or not task_id:
            raise DecodeError("message header 'id' is missing")
        if problem := name_error(task_id, "header 'id'"):
            raise DecodeError(f"message {printable(task_id)}: {problem}")
        if not isinstance(name, str) or not name:
            raise DecodeError(f"message {task_id} has no task name in header 'task'")
        if name not in _NAMES_SEEN and (problem := _seen(name, "header 'task'")):
            raise DecodeError(f"message {task_id}: {problem}")
        if not (isinstance(body, list) and len(body) == 3
                and isinstance(body[0], list) and isinstance(body[1], dict)):
            raise DecodeError(f"message {task_id} body is not [args, kwargs, embed]")
        embed = body[2] if isinstance(body[2], dict) else {}
        delivery = properties.get("delivery_info") or {}
        if not isinstance(delivery, dict):
            raise DecodeError(f"message {task_id} 'delivery_info' is not an object")
        queue = delivery.get("routing_key") or "default"
        if queue not in _NAMES_SEEN and (problem := _seen(queue, "'routing_key'")):
            raise DecodeError(f"message {task_id}: {problem}")
        extra = headers.keys() - _KNOWN_HEADERS
        try:
            return cls(
                id=task_id,
                task=name,
                args=tuple(body[0]),
                kwargs=body[1],
                queue=queue,
                priority=_bounded(properties.get("priority"), "priority", MAX_WIRE_PRIORITY),
                eta=parse_time(headers.get("eta")),
                expires=parse_time(headers.get("expires")),
                retries=_bounded(headers.get("retries"), "retries", MAX_COUNT),
                root_id=_optional_id(headers.get("root_id"), "root_id"),
                parent_id=_optional_id(headers.get("parent_id"), "parent_id"),
                group=_optional_id(headers.get("group"), "group"),
                ignore_result=bool(headers.get("ignore_result")),
                timelimit=_parse_timelimit(headers.get("timelimit")),
                headers={k: headers[k] for k in extra} if extra else {},
                callbacks=tuple(embed.get("callbacks") or ()),
                errbacks=tuple(embed.get("errbacks") or ()),
                chain=tuple(embed.get("chain") or ()),
                chord=embed.get("chord") if isinstance(embed.get("chord"), dict) else None,
            )
        except (TypeError, ValueError) as exc:
            raise DecodeError(f"message {task_id} has a malformed header: {exc}") from exc


#: A JSON string, as the encoder writes it (non-ASCII characters kept).
_string = json.encoder.encode_basestring


#: The end of a plain message's body: no workflow.
_EMBED_NONE = ',{"callbacks":null,"errbacks":null,"chain":null,"chord":null}]}'


@functools.lru_cache(maxsize=256)
def _frame(task: str, eta: dt.datetime | None, expires: dt.datetime | None, group: str | None,
           retries: int, root_id: str | None, parent_id: str | None, sender: str,
           ignore_result: bool, priority: int, queue: str) -> tuple[str, str, str, str, str, str]:
    """A plain message's envelope text but for its id, arguments and their reprs, in the
    pieces ``_plain_text()`` puts them between; ``root`` is '' for a message that is its own
    root (its id goes there)."""
    return (
        '{"headers":{"lang":"py","task":' + _string(task) + ',"id":',
        ',"shadow":null,"eta":' + _moment(eta) + ',"expires":' + _moment(expires)
        + ',"group":' + _optional(group) + ',"group_index":null,"retries":'
        + int.__repr__(retries) + ',"timelimit":[null,null],"root_id":',
        _string(root_id) if root_id else "",
        ',"parent_id":' + _optional(parent_id) + ',"argsrepr":',
        ',"origin":' + _string(sender) + ',"ignore_result":'
        + ("true" if ignore_result else "false") + '},"properties":{"correlation_id":',
        ',"content_type":"application/json","content_encoding":"utf-8","priority":'
        + int.__repr__(priority) + ',"delivery_info":{"exchange":"","routing_key":'
        + _string(queue) + '}},"body":')


def _optional(value: str | None) -> str:
    return "null" if value is None else _string(value)


def _moment(value: dt.datetime | None) -> str:
    return _string(value.isoformat()) if value else "null"


#: The headers a :class:`Message` has fields for; the others are kept in ``headers``.
_KNOWN_HEADERS = frozenset({
    "lang", "task", "id", "shadow", "eta", "expires", "group", "group_index", "retries",
    "timelimit", "root_id", "parent_id", "argsrepr", "kwargsrepr", "origin", "ignore_result"})


#: Task and queue names found valid: a worker reads the same few again and again.
_NAMES_SEEN: set[str] = set()
_NAMES_KEPT = 4096


def _seen(name: str, what: str) -> str:
    """``name_error()`` of a task or queue name, remembering the valid ones."""
    problem = name_error(name, what)
    if not problem and len(_NAMES_SEEN) < _NAMES_KEPT:
        _NAMES_SEEN.add(name)
    return problem


def parse_time(value: Any) -> dt.datetime | None:
    """A time from the wire or a database column (a datetime, or ISO text as SQLite gives
    it), aware: a naive one is UTC."""
    if value is None:
        return None
    moment = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment


_repr = reprlib.Repr()
_repr.maxlevel, _repr.maxstring, _repr.maxother = 4, 200, 200
_repr.maxlist = _repr.maxtuple = _repr.maxdict = 20


def _plain(value: Any) -> bool:
    """Whether ``repr(value)`` is what ``_repr`` makes of it: a short printable string (its
    repr at most 198 characters), an int of at most 40 characters, a float, a bool or None."""
    kind = type(value)
    if kind is str:
        return len(value) <= 98 and value.isprintable()
    if kind is int:
        return -10**39 < value < 10**39
    return kind is float or kind is bool or value is None


def _plain_key(value: Any) -> bool:
    return type(value) is str and _plain(value)


def _short_repr(value: Any, limit: int = 200) -> str:
    """A bounded repr (Celery's ``argsrepr``): safe for huge or deeply nested arguments."""
    kind = type(value)
    if kind is tuple or kind is list:  # the usual arguments: repr() itself, made faster
        if len(value) <= _repr.maxtuple and all(map(_plain, value)):
            text = repr(value)
            return text if len(text) <= limit else text[: limit - 3] + "..."
    elif kind is dict and len(value) <= _repr.maxdict and all(map(_plain_key, value)) \
            and all(map(_plain, value.values())) and list(value) == sorted(value):
        text = repr(value)  # _repr sorts the keys: only keys in order give the same text
        return text if len(text) <= limit else text[: limit - 3] + "..."
    try:
        text = _repr.repr(value)
    except (ValueError, RecursionError):  # an int past the conversion limit, say
        return "<not representable>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def new_ids(count: int) -> list[str]:
    """``count`` new task ids: random (version 4) UUIDs in their usual text form, as
    ``str(uuid.uuid4())`` writes them, made from one read of the system's randomness (a
    quarter of the time of ``uuid4()``, which reads it once per id)."""
    text = os.urandom(16 * count).hex()
    # 122 random bits each: hex digit 12 is the version (4), digit 16 the variant (8-b).
    return [f"{text[i:i + 8]}-{text[i + 8:i + 12]}-4{text[i + 13:i + 16]}-"
            f"{_VARIANT[text[i + 16]]}{text[i + 17:i + 20]}-{text[i + 20:i + 32]}"
            for i in range(0, 32 * count, 32)]


def new_id() -> str:
    """A new task, group or chord id (``new_ids()``)."""
    return new_ids(1)[0]


#: A random hex digit as the UUID variant digit (RFC 4122: binary 10xx), keeping 2 bits.
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


_origin: tuple[int, str] = (0, "")


def origin() -> str:
    """``pid@host`` of the process sending a message (Celery's ``origin`` header), looked up
    per process: a forked child is not its parent."""
    global _origin
    pid = os.getpid()
    if _origin[0] != pid:
        _origin = (pid, origin_of(pid))
    return _origin[1]


def origin_of(pid: int) -> str:
    """``pid@host`` of process ``pid`` of this host."""
    return f"{pid}@{socket.gethostname()}"


#: Longest task name, id or queue name: what the tables' columns hold.
MAX_NAME = 255
#: Priorities a task of ours may have: 0 to this (Celery's tasks use 0-9).
MAX_PRIORITY = 9
#: Priorities on the wire: AMQP's range.
MAX_WIRE_PRIORITY = 255
#: Counters (retries) stored in a 32-bit column.
MAX_COUNT = 2**31 - 1
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def name_error(value: Any, what: str) -> str:
    """Why ``value`` cannot be a task name, id or queue name; '' when it can.

    Each is stored in a 255-character column and written to logs, so it must be a short
    string without control characters (a NUL cannot be stored by PostgreSQL at all)."""
    if not isinstance(value, str) or not value:
        return f"{what} must be a non-empty string, not {printable(repr(value))}"
    if len(value) <= MAX_NAME and value.isascii() and value.isprintable():
        return ""  # the usual name: printable ASCII holds no control character
    if len(value) > MAX_NAME:
        return f"{what} is {len(value)} characters long; at most {MAX_NAME} are allowed"
    if found := _CONTROL.search(value):
        return (f"{what} {printable(value)!s} holds the control character "
                f"{printable(found.group())}; names and ids must be printable text")
    return ""


def printable(value: str, limit: int = 300) -> str:
    """``value`` with control characters escaped, for logs: a NUL or an ANSI escape in a
    task name must not reach a log file raw."""
    if not (value.isascii() and value.isprintable()) and _CONTROL.search(value):
        value = "".join(repr(c)[1:-1] if _CONTROL.match(c) else c for c in value)
    return value if len(value) <= limit else value[: limit - 3] + "..."


def _bounded(value: Any, what: str, most: int) -> int:
    number = int(value or 0)
    if not 0 <= number <= most:
        raise ValueError(f"'{what}' must be a whole number from 0 to {most}, not {number}")
    return number


def _optional_id(value: Any, what: str) -> str | None:
    if value is None:
        return None
    if problem := name_error(value, f"'{what}'"):
        raise ValueError(problem)
    return str(value)


_NO_LIMITS = [None, None]


def _parse_timelimit(value: Any) -> tuple[float | None, float | None]:
    """Celery's ``[hard, soft]`` header; each is a number of seconds or null."""
    if value is None or value == _NO_LIMITS:
        return None, None
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise ValueError(f"'timelimit' must be [hard, soft], not {value!r}")
    try:
        hard, soft = (None if v is None else float(v) for v in value)
    except (TypeError, ValueError):
        message = f"'timelimit' must hold numbers of seconds or nulls, not {value!r}"
        raise ValueError(message) from None
    if any(limit is not None and not limit > 0 for limit in (hard, soft)):
        raise ValueError(f"'timelimit' seconds must be positive, not {value!r}")
    return hard, soft


def bounded_priority(message: Message) -> int:
    """The message's priority within 0-``MAX_PRIORITY``, the nearest bound for one outside
    (a ``Message`` built by hand): what the database broker's queue rows hold (its claim
    reads each of those priorities as a range) and what the AMQP broker sends."""
    return min(max(int(message.priority), 0), MAX_PRIORITY)
