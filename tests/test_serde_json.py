"""The default serde's JSON: the same bytes and values as the `json` module, whatever path it takes.

Step results, inputs and outputs go through `DefaultSerde` on every step; it has shortcuts for the common
cases (integers, UTF-8 text, a serde per type hint). What a user sees must not depend on them: the bytes
written to the journal are `json.dumps(value, separators=(",", ":"))` and a decoded value is `json.loads`'s.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from durably.sdk.serde import DefaultSerde, UnencodableValue, serde_for

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(), kids, max_size=4),
    max_leaves=12,
)


def _reference(value: Any) -> bytes:
    return b"" if value is None else json.dumps(value, separators=(",", ":")).encode()


@settings(max_examples=400, deadline=None)
@given(JSON)
def test_encoding_is_json_dumps_and_decoding_json_loads(value: Any) -> None:
    serde = DefaultSerde()
    raw = serde.serialize(value)
    assert raw == _reference(value)
    if raw:
        back = serde.deserialize(raw)
        expected = json.loads(raw)
        # NaN is not equal to itself: compare the re-encoded forms.
        assert _reference(back) == _reference(expected)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=20) | st.from_regex(rb"\A[0-9+\-_ .eE]{1,17}\Z"))
def test_bytes_decode_like_json_loads_or_fail_like_it(raw: bytes) -> None:
    """Digits with a leading zero, signs, underscores and spaces: json.loads' answer, error included."""
    if not raw:
        return
    try:
        expected: Any = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        with pytest.raises(type(e)):
            DefaultSerde().deserialize(raw)
        return
    assert _reference(DefaultSerde(int).deserialize(raw)) == _reference(expected)


@pytest.mark.parametrize("raw", [
    '"h\u00e9llo"'.encode("utf-16"),        # UTF-16 with a BOM
    b"1\x00",                               # UTF-16-LE without one
    '{"a": [1, 2]}'.encode("utf-32-be"),
    b"\xef\xbb\xbf[1,2]",                   # a UTF-8 BOM
])
def test_other_encodings_json_detects_still_decode(raw: bytes) -> None:
    assert DefaultSerde().deserialize(raw) == json.loads(raw)


def test_leading_zero_and_big_numbers_are_json_not_python() -> None:
    assert DefaultSerde(int).deserialize(b"0") == 0
    assert DefaultSerde(int).deserialize(b"123456789012345678901234567890") == 123456789012345678901234567890
    with pytest.raises(ValueError):
        DefaultSerde(int).deserialize(b"012")


@dataclasses.dataclass
class Point:
    x: int
    y: int


def test_a_hint_that_builds_still_builds_and_one_serde_per_hint_is_shared() -> None:
    assert serde_for(None, Point) is serde_for(None, Point)
    assert serde_for(None, list[Point]).deserialize(b'[{"x":1,"y":2}]') == [Point(1, 2)]
    assert serde_for(None, Point | None).deserialize(b'{"x":3,"y":4}') == Point(3, 4)
    assert serde_for(None, list[int]).deserialize(b"[1,2]") == [1, 2]
    assert serde_for(None, Point).serialize(Point(5, 6)) == b'{"x":5,"y":6}'


def test_booleans_are_not_integers() -> None:
    serde = DefaultSerde()
    assert serde.serialize(True) == b"true"
    assert serde.serialize(False) == b"false"
    assert serde.deserialize(b"true") is True


def test_an_unencodable_value_is_named_with_where_it_sits() -> None:
    with pytest.raises(UnencodableValue, match=r"a set at \['tags'\] cannot be encoded"):
        DefaultSerde().serialize({"tags": {1, 2}})
