"""The client-frame codec: what it refuses before msgspec sees the frame, and with which code."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collective_sync.protocol.codec import MAX_DEPTH, MAX_SAFE_INTEGER, decode_client
from collective_sync.protocol.errors import ErrorCode, ProtocolError
from collective_sync.protocol.messages import Control

LIMIT = 64 * 1024


def control(payload: object) -> bytes:
    return json.dumps({"type": "control", "session": "abc", "event": "e", "payload": payload}).encode()


def refused(data: bytes) -> ErrorCode:
    with pytest.raises(ProtocolError) as err:
        decode_client(data, LIMIT)
    return err.value.code


def depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(alphabet='[]{}"\\ab', max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(alphabet='[]{}"\\k', max_size=4), inner, max_size=3)
    ),
    max_leaves=60,
)


@given(json_values)
def test_depth_limit_counts_structure_not_string_contents(payload: object) -> None:
    data = control(payload)
    frame_depth = 1 + depth(payload)  # the message object is level 1
    if frame_depth > MAX_DEPTH:
        assert refused(data) is ErrorCode.MALFORMED
    else:
        assert isinstance(decode_client(data, LIMIT), Control)


def test_depth_limit_exactly() -> None:
    at_limit = control(json.loads("[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1)))
    assert isinstance(decode_client(at_limit, LIMIT), Control)
    over = control(json.loads("[" * MAX_DEPTH + "]" * MAX_DEPTH))
    assert refused(over) is ErrorCode.MALFORMED
    assert refused(b"[" * 50_000) is ErrorCode.MALFORMED  # far too deep, and not even valid JSON


@pytest.mark.parametrize("bad", [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf4\x90\x80\x80"])
def test_invalid_utf8_is_malformed_even_where_ignored(bad: bytes) -> None:
    assert refused(b'{"type":"time","t0":1,"ignored":"' + bad + b'"}') is ErrorCode.MALFORMED
    assert refused(b'{"type":"create","name":"' + bad + b'"}') is ErrorCode.MALFORMED


def test_valid_utf8_passes() -> None:
    msg = decode_client(
        '{"type":"control","session":"abc","event":"e","payload":"héllo ✓ 😀"}'.encode(), LIMIT
    )
    assert isinstance(msg, Control) and msg.payload == "héllo ✓ 😀"


def test_integer_range() -> None:
    assert decode_client(control(MAX_SAFE_INTEGER), LIMIT).payload == MAX_SAFE_INTEGER  # type: ignore[union-attr]
    for n in (MAX_SAFE_INTEGER + 1, -MAX_SAFE_INTEGER - 1, 10**400):
        assert refused(control({"deep": [1, {"n": n}]})) is ErrorCode.INVALID_MESSAGE
    assert decode_client(control("12345678901234567890"), LIMIT).payload == "12345678901234567890"  # type: ignore[union-attr]


def test_size_limit_comes_first() -> None:
    assert refused(b"\xff" * (LIMIT + 1)) is ErrorCode.TOO_LARGE


def test_classification_echoes_rid_and_session() -> None:
    with pytest.raises(ProtocolError) as err:
        decode_client(b'{"type":"control","session":"abc","rid":7}', LIMIT)
    assert (err.value.code, err.value.rid, err.value.session) == (ErrorCode.INVALID_MESSAGE, 7, "abc")
    assert refused(b'{"type":"nope"}') is ErrorCode.UNKNOWN_TYPE
    assert refused(b"[1]") is ErrorCode.MALFORMED
