"""The JSON serializer: tagged extra types, errors that say what to pass."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import pytest

from django_tasks import serialization
from django_tasks.exceptions import DecodeError, EncodeError, TaskError

from .conftest import nested_list


def round_trip(value: Any) -> Any:
    return serialization.loads(serialization.dumps(value))


@pytest.mark.parametrize(
    "value",
    [
        dt.datetime(2024, 3, 31, 1, 30, 15, 123456, tzinfo=dt.UTC),
        dt.datetime(2024, 3, 31, 1, 30, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))),
        dt.date(1999, 12, 31),
        dt.time(23, 59, 58, 999),
        uuid.UUID("12345678-1234-5678-1234-567812345678"),
        Decimal("3.14159265358979323846264338327950288"),
        Decimal("-0.00"),
        b"plain ascii",
        "caf\u00e9 \U0001f600".encode(),
        b"\x00\xff\xfe binary",
        b"",
        dt.time(9, 30, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        uuid.uuid4(),
        uuid.UUID(int=2**128 - 1),
    ],
    ids=["datetime-utc", "datetime-offset", "date", "time", "uuid", "decimal", "decimal-neg-0",
         "bytes-ascii", "bytes-utf8", "bytes-binary", "bytes-empty", "time-offset", "uuid4",
         "uuid-max"],
)
def test_extra_types_come_back_as_themselves(value: Any) -> None:
    back = round_trip(value)
    assert type(back) is type(value)
    assert back == value
    assert str(back) == str(value)


def test_aware_datetime_keeps_its_offset() -> None:
    moment = dt.datetime(2024, 6, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=-7)))
    back = round_trip(moment)
    assert back.utcoffset() == dt.timedelta(hours=-7)
    assert back.tzinfo is not None


def test_datetime_is_not_mistaken_for_a_date() -> None:
    # datetime subclasses date: it must be tagged as the richer type.
    encoded = serialization.dumps(dt.datetime(2024, 1, 1, 8, 0, tzinfo=dt.UTC))
    assert '"__type__":"datetime"' in encoded


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
         '{"__type__":"datetime","__value__":"2024-01-02T03:04:05+00:00"}'),
        (dt.date(2024, 1, 2), '{"__type__":"date","__value__":"2024-01-02"}'),
        (dt.time(3, 4, 5, 6), '{"__type__":"time","__value__":"03:04:05.000006"}'),
        (Decimal("1.50"), '{"__type__":"decimal","__value__":"1.50"}'),
        (uuid.UUID("7d444840-9dc0-11d1-b245-5ffdce74fad2"),
         '{"__type__":"uuid","__value__":{"hex":"7d4448409dc011d1b2455ffdce74fad2",'
         '"version":1}}'),
        (uuid.UUID(int=1), '{"__type__":"uuid","__value__":{"hex":'
                           '"00000000000000000000000000000001","version":null}}'),
        (b"caf\xc3\xa9", '{"__type__":"bytes","__value__":"caf\u00e9"}'),
        (b"\xff\x00", '{"__type__":"base64","__value__":"/wA="}'),
    ],
    ids=["datetime", "date", "time", "decimal", "uuid", "uuid-no-version", "bytes", "base64"],
)
def test_tags_are_exactly_kombus(value: Any, encoded: str) -> None:
    """kombu 5.3+ writes (and reads) these very texts: Celery workers and clients sharing a
    queue with ours get the same values."""
    assert serialization.dumps(value) == encoded
    assert serialization.loads(encoded) == value


MIXED = {
    "when": dt.datetime(2024, 3, 31, 1, 30, 15, 123456, tzinfo=dt.UTC),
    "day": dt.date(1999, 12, 31), "at": dt.time(23, 59, 58, 999),
    "id": uuid.UUID("7d444840-9dc0-11d1-b245-5ffdce74fad2"), "v4": uuid.uuid4(),
    "nil": uuid.UUID(int=0), "price": Decimal("9.99"),
    "text": b"caf\xc3\xa9", "blob": b"\x89PNG\x00\xff", "empty": b"",
    "plain": [1, 2.5, "x", None, True],
}


def test_kombu_reads_what_we_write_and_we_read_what_kombu_writes() -> None:
    kombu_json = pytest.importorskip("kombu.utils.json")
    assert kombu_json.loads(serialization.dumps(MIXED)) == MIXED
    assert serialization.loads(kombu_json.dumps(MIXED)) == MIXED


def test_uuids_stored_as_plain_strings_before_still_decode() -> None:
    old = '{"__type__":"uuid","__value__":"00000000-0000-0000-0000-000000000001"}'
    assert serialization.loads(old) == uuid.UUID(int=1)


def test_a_uuid_of_a_version_this_python_does_not_know_decodes_from_its_hex() -> None:
    # A version 7 UUID from a newer Python: the hex alone says what it is.
    value = uuid.UUID("01890a5d-ac96-774b-bcce-b302099a8057")
    raw = '{"__type__":"uuid","__value__":{"hex":"' + value.hex + '","version":7}}'
    assert serialization.loads(raw) == value


def test_bytes_in_arguments_and_nested_values_round_trip() -> None:
    value = {"blob": b"\x89PNG\r\n\x1a\n\x00", "parts": [b"a", (b"b\x80",)], "text": "b"}
    assert round_trip(value) == {"blob": b"\x89PNG\r\n\x1a\n\x00", "parts": [b"a", [b"b\x80"]],
                                 "text": "b"}


def test_bytes_with_a_nul_are_stored_escaped() -> None:
    encoded = serialization.dumps(b"a\x00b")
    assert "\x00" not in encoded  # JSON's \u0000 escape: every database stores it
    assert round_trip(b"a\x00b") == b"a\x00b"


def test_objects_with_a_json_method_and_lazy_strings_are_sent_as_kombu_sends_them() -> None:
    from django.utils.translation import gettext_lazy

    class Point:
        def __json__(self) -> dict[str, int]:
            return {"x": 1, "y": 2}

    assert round_trip([Point(), gettext_lazy("Hello")]) == [{"x": 1, "y": 2}, "Hello"]


def test_nested_structures_round_trip() -> None:
    value = {
        "when": [dt.datetime(2024, 2, 29, tzinfo=dt.UTC), dt.date(2024, 2, 29)],
        "ids": {"a": uuid.UUID(int=7), "nested": {"price": Decimal("9.99")}},
        "plain": [1, 2.5, "x", None, True, {"deep": [[dt.time(1, 2)]]}],
    }
    assert round_trip(value) == value


def test_tuples_become_lists_and_sets_become_lists() -> None:
    assert round_trip((1, 2)) == [1, 2]
    assert round_trip({"s": {3}}) == {"s": [3]}
    assert sorted(round_trip(frozenset({1, 2}))) == [1, 2]


def test_a_dict_that_only_looks_tagged_is_left_alone() -> None:
    assert round_trip({"__type__": "datetime", "__value__": "x", "more": 1}) == {
        "__type__": "datetime", "__value__": "x", "more": 1,
    }
    assert round_trip({"__type__": "unknown", "__value__": "x"}) == {
        "__type__": "unknown", "__value__": "x",
    }


def test_output_is_compact() -> None:
    assert serialization.dumps({"a": [1, 2]}) == '{"a":[1,2]}'


class Unserializable:
    pass


def test_unknown_type_is_an_encode_error_that_says_what_to_pass() -> None:
    with pytest.raises(EncodeError) as info:
        serialization.dumps({"user": Unserializable()}, "arguments of task 'app.send'")
    error = info.value
    assert isinstance(error, TypeError)
    assert isinstance(error, TaskError)
    message = str(error)
    assert message.startswith("arguments of task 'app.send' cannot be serialized to JSON")
    assert "Unserializable" in message
    assert "primary key" in message
    assert "Pass plain data" in message
    assert isinstance(error.__cause__, TypeError)


def test_the_default_description_is_value() -> None:
    with pytest.raises(EncodeError, match=r"^value cannot be serialized"):
        serialization.dumps(object())


def test_non_string_dict_keys_that_json_cannot_hold_are_encode_errors() -> None:
    with pytest.raises(EncodeError):
        serialization.dumps({(1, 2): "tuple key"})


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_nan_and_infinity_are_rejected(bad: float) -> None:
    with pytest.raises(EncodeError, match="cannot be serialized to JSON"):
        serialization.dumps({"x": [bad]})


@pytest.mark.parametrize("raw", ["{", "", "not json", b"\xff\xfe", "[1,]"])
def test_bad_json_is_a_decode_error(raw: str | bytes) -> None:
    with pytest.raises(DecodeError, match="not valid JSON"):
        serialization.loads(raw)


def test_decode_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        serialization.loads("{")


def test_loads_accepts_bytes() -> None:
    assert serialization.loads(b'{"a":1}') == {"a": 1}


def test_a_malformed_tagged_datetime_is_a_decode_error() -> None:
    with pytest.raises(DecodeError):
        serialization.loads('{"__type__":"datetime","__value__":"yesterday"}')


def test_a_malformed_tagged_decimal_is_a_decode_error() -> None:
    with pytest.raises(DecodeError):
        serialization.loads('{"__type__":"decimal","__value__":"nope"}')


@pytest.mark.parametrize(
    "raw",
    [
        '{"__type__":"uuid","__value__":5}',
        '{"__type__":"uuid","__value__":{"version":4}}',
        '{"__type__":"uuid","__value__":{"hex":"zz","version":4}}',
        '{"__type__":"bytes","__value__":5}',
        '{"__type__":"bytes","__value__":"\\ud800"}',
        '{"__type__":"base64","__value__":"not base64!"}',
        '{"__type__":"base64","__value__":"' + "A" * 1001 + '"}',
        '{"__type__":"date","__value__":"2024-13-01"}',
        '{"__type__":"time","__value__":[]}',
    ],
    ids=["uuid-int", "uuid-no-hex", "uuid-bad-hex", "bytes-int", "bytes-surrogate",
         "base64-bad", "base64-padding", "date", "time"],
)
def test_a_malformed_tagged_value_is_a_decode_error(raw: str) -> None:
    with pytest.raises(DecodeError, match="bad tagged") as info:
        serialization.loads(raw)
    assert len(str(info.value)) < 300  # a huge bad value is not repeated whole


# -- what JSON or a database cannot carry faithfully ----------------------------------------


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("lone \ud800 surrogate", "lone surrogate"),
        ({"key \udfff": 1}, "lone surrogate"),
        (nested_list(100_000), "nested too deeply"),
        (10 ** 5000, "integer string conversion"),
    ],
    ids=["surrogate", "surrogate-key", "deep", "huge-int"],
)
def test_what_cannot_be_stored_is_an_encode_error(value: Any, reason: str) -> None:
    with pytest.raises(EncodeError, match=reason):
        serialization.dumps(value, "arguments of task 'app.t'")


def test_nul_and_non_ascii_text_round_trip() -> None:
    value = {"text": "a\x00b", "emoji": "\U0001f600", "accents": "éü"}
    encoded = serialization.dumps(value)
    assert "\x00" not in encoded and "\U0001f600" in encoded  # NUL escaped, UTF-8 kept
    assert round_trip(value) == value


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ('[NaN]', "NaN is not a JSON number"),
        ('{"x": Infinity}', "Infinity is not a JSON number"),
        ('["\\ud800"]', "lone surrogate"),
        ('{"\\udc00": 1}', "lone surrogate"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ("1" * 5000, "digits"),
    ],
    ids=["nan", "infinity", "surrogate", "surrogate-key", "deep", "huge-int"],
)
def test_what_a_task_cannot_be_given_is_a_decode_error(raw: str, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        serialization.loads(raw)


def test_an_escaped_surrogate_pair_is_fine() -> None:
    assert serialization.loads('["\\ud83d\\ude00", "\\\\ud800"]') == ["\U0001f600", "\\ud800"]


def test_storable_text_escapes_only_what_a_database_refuses() -> None:
    assert serialization.storable_text("plain") == "plain"
    assert serialization.storable_text(None) is None
    assert serialization.storable_text("é\x00\ud800") == "é\\x00\\ud800"
