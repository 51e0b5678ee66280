"""Encoding and decoding of frames, kept apart from any socket.

A client frame is one JSON message. A server frame is one JSON message or a JSON array of
messages: the server joins everything a receiver gets in one event-loop turn into one frame,
and a broadcast is encoded once and shared by every receiver.

Client frames are checked before they are decoded for what msgspec does not refuse on its own
(docs/protocol.md, "Frames"): valid UTF-8 everywhere (also inside fields the schema ignores),
at most `MAX_DEPTH` levels of nesting, and integers a JavaScript client reads exactly.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import msgspec
import numpy as np

from .errors import ErrorCode, ProtocolError
from .messages import (
    CLIENT_TYPES,
    ClientMessage,
    Control,
    Create,
    Join,
    ServerMessage,
    Signal,
    StateSet,
    UpdateMeta,
)

MAX_DEPTH = 32  # nesting levels of objects/arrays in one frame; the message object is level 1
MAX_SAFE_INTEGER = 2**53 - 1  # the largest integer every JSON client (JavaScript) reads exactly

_client_decoder = msgspec.json.Decoder(ClientMessage)
_server_decoder = msgspec.json.Decoder(ServerMessage | list[ServerMessage])
_encoder = msgspec.json.Encoder()
# JSON string literals (escapes included); what is left after removing them is structure.
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_LONG_DIGITS = re.compile(rb"\d{16}")  # an integer that may be over MAX_SAFE_INTEGER


class _Envelope(msgspec.Struct):
    """Lenient view of a rejected frame, to echo `rid`/`session` and classify the error."""

    type: object = None
    rid: object = None
    session: object = None


_envelope_decoder = msgspec.json.Decoder(_Envelope)


def decode_client(data: bytes, max_bytes: int) -> ClientMessage:
    """Decode and validate one client frame, or raise ProtocolError with the right code."""
    if len(data) > max_bytes:
        raise too_large(len(data), max_bytes)
    if not data.isascii():
        try:
            data.decode()
        except UnicodeDecodeError as exc:
            raise ProtocolError(ErrorCode.MALFORMED, f"not valid UTF-8 (byte {exc.start})") from None
    if too_deep(data):
        raise ProtocolError(ErrorCode.MALFORMED, f"nested deeper than {MAX_DEPTH} levels")
    try:
        msg = _client_decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise _classify(data, exc) from None
    except msgspec.DecodeError as exc:
        raise ProtocolError(ErrorCode.MALFORMED, f"not a JSON message: {exc}") from None
    if _LONG_DIGITS.search(data) is not None:
        _check_integers(msg)
    return msg


def too_large(size: int, max_bytes: int) -> ProtocolError:
    """The refusal of a message over the size limit (whole, or reassembled from fragments)."""
    return ProtocolError(ErrorCode.TOO_LARGE, f"message of {size} bytes exceeds the limit of {max_bytes}")


def too_deep(data: bytes) -> bool:
    """True if objects/arrays nest deeper than MAX_DEPTH (string contents do not count).

    msgspec has no depth limit of its own and recurses on the C stack; the common frame has fewer
    brackets than the limit and costs two `count`s, a bracket-heavy one a vectorised scan.
    """
    if data.count(b"[") + data.count(b"{") <= MAX_DEPTH:
        return False
    brackets = np.frombuffer(_STRINGS.sub(b"", data).translate(None, _NOT_BRACKETS), np.uint8)
    if brackets.size == 0:
        return False
    steps = np.where((brackets == ord("[")) | (brackets == ord("{")), 1, -1)
    return int(np.cumsum(steps).max()) > MAX_DEPTH


def _check_integers(msg: ClientMessage) -> None:
    """Refuse integers a browser would read as another number (or as Infinity)."""
    free: list[Any]
    match msg:
        case Create() | Join() | UpdateMeta():
            free = [msg.meta]
        case Control():
            free = [msg.payload]
        case Signal():
            free = [msg.signal]
        case StateSet():
            free = list(msg.set.values())
        case _:
            return
    stack = free
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        elif type(value) is int and not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            raise ProtocolError(
                ErrorCode.INVALID_MESSAGE,
                f"integer beyond ±{MAX_SAFE_INTEGER} (not exact in every client)",
                getattr(msg, "rid", None),
                getattr(msg, "session", None),
            )


def _classify(data: bytes, exc: msgspec.ValidationError) -> ProtocolError:
    try:
        env = _envelope_decoder.decode(data)
    except msgspec.DecodeError:
        return ProtocolError(ErrorCode.MALFORMED, "a message must be a JSON object")
    rid = env.rid if isinstance(env.rid, int) and not isinstance(env.rid, bool) and env.rid >= 0 else None
    session = env.session if isinstance(env.session, str) and len(env.session) <= 64 else None
    if not isinstance(env.type, str) or env.type not in CLIENT_TYPES:
        shown = env.type[:64] if isinstance(env.type, str) else None
        return ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown message type {shown!r}", rid, session)
    return ProtocolError(ErrorCode.INVALID_MESSAGE, str(exc), rid, session)


def encode(msg: ServerMessage | msgspec.Struct) -> bytes:
    return _encoder.encode(msg)


def join_frame(encoded: Sequence[bytes]) -> bytes:
    """One frame from already-encoded messages: the message itself, or a JSON array of them."""
    if len(encoded) == 1:
        return encoded[0]
    return b"[" + b",".join(encoded) + b"]"


def decode_server(data: bytes | str) -> list[ServerMessage]:
    """Decode a server frame (single message or batch) into a list of messages (SDK side)."""
    out = _server_decoder.decode(data)
    return out if isinstance(out, list) else [out]


def encode_client(msg: ClientMessage) -> bytes:
    return _encoder.encode(msg)
