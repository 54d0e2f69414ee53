"""The wire format: Celery's message protocol v2, and the reasons a message is rejected."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from decimal import Decimal
from typing import Any

import pytest

from django_tasks.exceptions import DecodeError
from django_tasks.message import CONTENT_TYPE, Message

ETA = dt.datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=dt.UTC)
EXPIRES = dt.datetime(2030, 1, 3, tzinfo=dt.UTC)


def full_message() -> Message:
    return Message(
        id="11111111-2222-3333-4444-555555555555", task="app.tasks.add",
        args=(2, "x", [dt.date(2024, 1, 1)]),
        kwargs={"price": Decimal("1.50"), "who": uuid.UUID(int=3)},
        queue="mail", priority=7, eta=ETA, expires=EXPIRES, retries=2,
        root_id="root-1", parent_id="parent-1", group="group-1", ignore_result=True,
        headers={"x-trace": "abc"},
        callbacks=({"task": "app.tasks.done", "args": [], "kwargs": {}},),
        errbacks=({"task": "app.tasks.oops", "args": [], "kwargs": {}},),
    )


def envelope(**changes: Any) -> dict[str, Any]:
    """A minimal valid envelope with top-level keys replaced (None removes one)."""
    env: dict[str, Any] = {
        "headers": {"id": "abc", "task": "app.tasks.add"},
        "properties": {},
        "body": [[1, 2], {}, {}],
    }
    for key, value in changes.items():
        if value is None:
            env.pop(key)
        else:
            env[key] = value
    return env


def decode(env: Any) -> Message:
    return Message.decode(json.dumps(env))


def test_encode_decode_round_trip_keeps_every_field() -> None:
    message = full_message()
    assert Message.decode(message.encode()) == message


def test_round_trip_accepts_bytes() -> None:
    message = full_message()
    assert Message.decode(message.encode().encode()) == message


def test_root_id_defaults_to_the_message_id() -> None:
    message = Message(id="only", task="t")
    assert message.to_envelope()["headers"]["root_id"] == "only"
    assert Message.decode(message.encode()).root_id == "only"


def test_envelope_headers_follow_celery_protocol_v2() -> None:
    headers = full_message().to_envelope()["headers"]
    assert headers["lang"] == "py"
    assert headers["task"] == "app.tasks.add"
    assert headers["id"] == "11111111-2222-3333-4444-555555555555"
    assert headers["eta"] == ETA.isoformat()
    assert headers["expires"] == EXPIRES.isoformat()
    assert headers["retries"] == 2
    assert headers["root_id"] == "root-1"
    assert headers["parent_id"] == "parent-1"
    assert headers["group"] == "group-1"
    assert headers["timelimit"] == [None, None]
    assert headers["argsrepr"] == repr((2, "x", [dt.date(2024, 1, 1)]))
    assert headers["kwargsrepr"].startswith("{'price': Decimal('1.50')")
    assert "@" in headers["origin"]
    assert headers["ignore_result"] is True
    assert headers["x-trace"] == "abc"


def test_envelope_body_is_args_kwargs_embed() -> None:
    args, kwargs, embed = full_message().to_envelope()["body"]
    assert args == [2, "x", [dt.date(2024, 1, 1)]]
    assert kwargs == {"price": Decimal("1.50"), "who": uuid.UUID(int=3)}
    assert embed == {
        "callbacks": [{"task": "app.tasks.done", "args": [], "kwargs": {}}],
        "errbacks": [{"task": "app.tasks.oops", "args": [], "kwargs": {}}],
        "chain": None,
        "chord": None,
    }


def test_envelope_properties_carry_priority_and_routing_key() -> None:
    properties = full_message().to_envelope()["properties"]
    assert properties["priority"] == 7
    assert properties["delivery_info"] == {"exchange": "", "routing_key": "mail"}
    assert properties["correlation_id"] == "11111111-2222-3333-4444-555555555555"
    assert properties["content_type"] == CONTENT_TYPE == "application/json"


def test_no_eta_or_expires_encode_as_null() -> None:
    headers = Message(id="a", task="t").to_envelope()["headers"]
    assert headers["eta"] is None and headers["expires"] is None


def test_encoded_message_is_plain_json_a_celery_worker_can_read() -> None:
    raw = json.loads(full_message().encode())
    assert set(raw) == {"headers", "properties", "body"}
    assert raw["body"][1]["price"] == {"__type__": "decimal", "__value__": "1.50"}


def test_custom_headers_cannot_override_protocol_headers() -> None:
    message = Message(id="real", task="t", headers={"id": "fake", "task": "evil"})
    headers = message.to_envelope()["headers"]
    assert (headers["id"], headers["task"]) == ("real", "t")


def test_defaults_when_optional_parts_are_missing() -> None:
    message = decode(envelope(properties=None))
    assert message.queue == "default"
    assert message.priority == 0
    assert message.args == (1, 2) and message.kwargs == {}
    assert message.eta is None and message.retries == 0
    assert message.callbacks == () and message.errbacks == ()


def test_a_naive_eta_is_read_as_utc() -> None:
    message = decode(envelope(headers={"id": "a", "task": "t", "eta": "2030-01-01T10:00:00"}))
    assert message.eta == dt.datetime(2030, 1, 1, 10, tzinfo=dt.UTC)


def test_unknown_headers_are_kept() -> None:
    message = decode(envelope(headers={"id": "a", "task": "t", "x-tenant": 4}))
    assert message.headers == {"x-tenant": 4}


def test_replace_returns_a_changed_copy() -> None:
    message = Message(id="a", task="t")
    again = message.replace(retries=3)
    assert (message.retries, again.retries, again.id) == (0, 3, "a")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2, 3]", "message is not a JSON object"),
        ('"a string"', "message is not a JSON object"),
    ],
)
def test_raw_text_that_is_no_envelope(raw: str, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        Message.decode(raw)


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        (envelope(headers=None), "no headers object"),
        (envelope(headers=["id", "task"]), "no headers object"),
        (envelope(headers={"task": "t"}), "header 'id' is missing"),
        (envelope(headers={"id": "", "task": "t"}), "header 'id' is missing"),
        (envelope(headers={"id": 5, "task": "t"}), "header 'id' is missing"),
        (envelope(headers={"id": "abc"}), "message abc has no task name in header 'task'"),
        (envelope(headers={"id": "abc", "task": ""}), "has no task name"),
        (envelope(body=None), r"message abc body is not \[args, kwargs, embed\]"),
        (envelope(body=[[], {}]), r"body is not \[args, kwargs, embed\]"),
        (envelope(body={"args": []}), r"body is not \[args, kwargs, embed\]"),
        (envelope(body=[{}, {}, {}]), r"body is not \[args, kwargs, embed\]"),
        (envelope(body=[[], [], {}]), r"body is not \[args, kwargs, embed\]"),
        (envelope(headers={"id": "abc", "task": "t", "eta": "soon"}),
         "message abc has a malformed header"),
        (envelope(headers={"id": "abc", "task": "t", "eta": 12}), "malformed header"),
        (envelope(headers={"id": "abc", "task": "t", "expires": "later"}), "malformed header"),
        (envelope(headers={"id": "abc", "task": "t", "retries": "many"}), "malformed header"),
        (envelope(properties={"priority": "high"}), "malformed header"),
    ],
    ids=["no-headers", "headers-list", "no-id", "empty-id", "int-id", "no-task", "empty-task",
         "no-body", "short-body", "body-object", "args-object", "kwargs-list", "eta-text",
         "eta-number", "expires-text", "retries-text", "priority-text"],
)
def test_each_defect_is_a_decode_error_naming_it(env: dict[str, Any], reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        decode(env)


@pytest.mark.parametrize("properties", ["text", [1], {"delivery_info": "text"}])
def test_properties_that_are_not_objects_are_a_decode_error(properties: Any) -> None:
    with pytest.raises(DecodeError):
        decode(envelope(properties=properties))


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"id": "a\x00b", "task": "t"}, "header 'id'.*control character"),
        ({"id": "x" * 256, "task": "t"}, "256 characters long; at most 255"),
        ({"id": "abc", "task": "t\x00"}, "header 'task'.*control character"),
        ({"id": "abc", "task": "t\x1b[31m"}, "control character"),
        ({"id": "abc", "task": "t" * 256}, "at most 255"),
        ({"id": "abc", "task": "t", "retries": 10 ** 30}, "'retries' must be a whole number"),
        ({"id": "abc", "task": "t", "retries": -1}, "'retries' must be a whole number"),
        ({"id": "abc", "task": "t", "root_id": 7}, "'root_id' must be a non-empty string"),
        ({"id": "abc", "task": "t", "group": "g\x00"}, "'group'.*control character"),
    ],
    ids=["nul-id", "long-id", "nul-task", "escape-task", "long-task", "huge-retries",
         "negative-retries", "int-root-id", "nul-group"],
)
def test_names_ids_and_counters_a_database_cannot_hold_are_refused(
        headers: dict[str, Any], reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        decode(envelope(headers=headers))


def test_a_priority_out_of_range_is_refused() -> None:
    with pytest.raises(DecodeError, match="'priority' must be a whole number from 0 to 255"):
        decode(envelope(properties={"priority": 1000}))


def test_a_routing_key_with_a_nul_is_refused() -> None:
    with pytest.raises(DecodeError, match="'routing_key'"):
        decode(envelope(properties={"delivery_info": {"routing_key": "q\x00"}}))


def test_origin_is_the_sending_process_even_after_a_fork() -> None:
    import os
    import warnings

    from django_tasks import message as message_module

    parent = message_module.origin()
    assert parent.startswith(f"{os.getpid()}@")
    read, write = os.pipe()
    with warnings.catch_warnings():  # Python 3.12 warns of fork beside threads; none run here
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child reports its own origin, then leaves at once
        os.write(write, message_module.origin().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 200).decode().startswith(f"{pid}@")


def test_argsrepr_is_bounded_for_huge_and_deep_arguments() -> None:
    deep: list[Any] = []
    inner = deep
    for _ in range(500):
        inner.append([])
        inner = inner[0]
    headers = Message(id="a", task="t", args=(deep, "x" * 10_000)).to_envelope()["headers"]
    assert len(headers["argsrepr"]) <= 200


@pytest.mark.parametrize("value", [
    (1, 2), (), [1.5, None, True], ("é" * 98,), ("x" * 99,), ("'\"\\" * 33,),
    ("\x00" * 50,), ("\u2028",), (10**39 - 1, -(10**39) + 1), (10**39,), tuple(range(25)),
    {"a": 1, "b": "x"}, {"b": 1, "a": 2}, {}, {1: 2}, {"a": [1]}, (["q"], {"k": 1}),
    {"a" * 98: "b" * 98, "c": 1}, (float("nan"), 1e300),
])
def test_argsrepr_of_plain_arguments_is_what_reprlib_gives(value: Any) -> None:
    """Plain arguments take a shortcut (``repr()`` itself); the text is the same as the
    bounded repr's, truncation included."""
    from django_tasks.message import _repr, _short_repr

    expected = _repr.repr(value)
    expected = expected if len(expected) <= 200 else expected[:197] + "..."
    assert _short_repr(value) == expected


@pytest.mark.parametrize("message", [
    Message(id="a", task="app.tasks.noop"),
    Message(id="b", task="app.tasks.add", args=(1, 2.5, "x", None, True, [1, {"k": "v"}]),
            kwargs={"z": 1, "a": "é", "q": 'say "hi" \\ bye'}),
    Message(id="c", task='app.tasks.odd "name" \\ tâche', queue='que"ue', priority=9,
            eta=ETA, expires=EXPIRES, retries=3, root_id="r", parent_id="p", group="g",
            ignore_result=True),
    Message(id="d", task="app.tasks.typed", args=(dt.date(2024, 1, 1), Decimal("1.5")),
            kwargs={"who": uuid.UUID(int=3), "when": ETA, "raw": b"\x00\xff"}),
    Message(id="e", task="app.tasks.secret", args=("x" * 500,), kwargs={"password": "s"}),
    Message(id="f", task="app.tasks.emoji", args=("\U0001f600", "\u2028"), root_id="f"),
], ids=["bare", "plain-args", "every-field", "tagged-types", "long-and-masked", "unicode"])
def test_a_plain_message_is_encoded_as_the_envelope_is(message: Message) -> None:
    """The usual message's text is written around its encoded arguments: it must be the
    generic encoding of ``to_envelope()``, to the byte."""
    from django_tasks import serialization

    assert message._plain()
    expected = serialization.dumps(message.to_envelope(), "arguments")
    assert message.encode() == expected
    assert Message.decode(expected).encode() == expected  # and read back, the same again


def test_a_message_with_headers_or_a_workflow_takes_the_generic_encoding() -> None:
    from django_tasks import serialization

    for message in (full_message(), Message(id="t", task="x", timelimit=(10.0, None)),
                    Message(id="c", task="x", chord={"task": "cb"})):
        assert not message._plain()
        assert message.encode() == serialization.dumps(message.to_envelope(), "arguments")


def test_unserializable_arguments_fail_the_same_way_on_the_plain_path() -> None:
    from django_tasks.exceptions import EncodeError

    with pytest.raises(EncodeError, match=r"arguments of task 'app\.t' cannot be serialized"):
        Message(id="u", task="app.t", args=(object(),)).encode()
    with pytest.raises(EncodeError, match="lone surrogate"):
        Message(id="u", task="app.t", kwargs={"s": "\udc80"}).encode()
    with pytest.raises(EncodeError, match="lone surrogate"):  # in a field, made by hand
        Message(id="u", task="app.t", group="g\udc80").encode()


def test_the_frame_kept_for_a_task_is_never_used_for_a_message_that_differs() -> None:
    """What is the same for every call of a task is written once and kept: a message that
    differs in any of those fields still gets its own envelope's text."""
    from django_tasks import serialization

    base = Message(id="a", task="app.tasks.framed", args=(1,))
    variants = [base, base.replace(queue="other"), base.replace(priority=4),
                base.replace(retries=1), base.replace(root_id="r"), base.replace(parent_id="p"),
                base.replace(group="g"), base.replace(ignore_result=True),
                base.replace(eta=ETA), base.replace(expires=EXPIRES), base.replace(id="b")]
    for _ in range(2):  # the second time from the kept frames
        for message in variants:
            message = message.replace()  # encoded afresh
            assert message.encode() == serialization.dumps(message.to_envelope(), "args")
