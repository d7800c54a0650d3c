"""A JSON body reads to the same values, and fails with the same words, whichever parser
reads it: orjson where it can, json where orjson refuses or could read a number otherwise."""

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.errors import InvalidInput
from app.routes import JsonRequest

values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


def _read(body: bytes) -> Any:
    return JsonRequest({"type": "http", "headers": []})._read(body)


def _same(a: Any, b: Any) -> bool:
    """Equal and of the same types all the way down (1 == 1.0, but a client sent one)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


@given(value=values, indent=st.sampled_from([None, 1]))
@settings(max_examples=300, deadline=None)
def test_a_body_reads_as_json_reads_it(value: Any, indent: int | None) -> None:
    body = json.dumps(value, indent=indent).encode()
    assert _same(_read(body), json.loads(body))


@pytest.mark.parametrize(
    "body",
    [
        b'{"carats": [18446744073709551616, -9223372036854775809]}',  # past 64 bits
        b'{"carats": [1e400, -1e400, NaN, Infinity]}',  # json reads these; orjson does not
        b'\xef\xbb\xbf{"carats": [1.5]}',  # a byte-order mark
        '{"carats": [2.5]}'.encode("utf-16"),
        b'{"name": "\\ud800"}',  # a lone surrogate
        b'{"a": 1, "a": 2.0}',
    ],
)
def test_what_orjson_refuses_or_reads_otherwise_is_read_by_json(body: bytes) -> None:
    got, expected = _read(body), json.loads(body)
    assert _same(got, expected) or repr(got) == repr(expected)  # nan != nan


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"", "expecting value at line 1 column 1"),
        (b'{"a": 1,}', "expecting property name enclosed in double quotes at line 1 column 9"),
        (b"[1] [2]", "extra data at line 1 column 5"),
        (b'["a\x01"]', "control character in a string at line 1 column 4"),
        (b"\xff", "not UTF-8 text: invalid start byte at byte 0"),
    ],
)
def test_a_body_neither_reads_fails_with_jsons_words(body: bytes, words: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        _read(body)
    assert f"not valid JSON: {words}" in str(caught.value.detail)
