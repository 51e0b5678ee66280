"""Encoding and decoding of frames, kept apart from any socket.

A client frame is one JSON message. A server frame is one JSON message or a JSON array of
messages: the server joins everything a receiver gets in one event-loop turn into one frame,
and a broadcast is encoded once and shared by every receiver.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from .errors import ErrorCode
from .messages import CLIENT_TYPES, ClientMessage, Error, ServerMessage

_client_decoder = msgspec.json.Decoder(ClientMessage)
_server_decoder = msgspec.json.Decoder(ServerMessage | list[ServerMessage])
_encoder = msgspec.json.Encoder()


class _Envelope(msgspec.Struct):
    """Lenient view of a rejected frame, to echo `rid`/`session` and classify the error."""

    type: object = None
    rid: object = None
    session: object = None


_envelope_decoder = msgspec.json.Decoder(_Envelope)


class DecodeFailure(Exception):
    """A client frame that cannot be accepted; carries the typed error to send back."""

    def __init__(self, code: ErrorCode, message: str, rid: int | None = None, session: str | None = None):
        super().__init__(message)
        self.code = code
        self.rid = rid
        self.session = session

    def to_error(self) -> Error:
        return Error(code=self.code, message=str(self), rid=self.rid, session=self.session)


def decode_client(data: bytes | memoryview | str) -> ClientMessage:
    """Decode and validate one client frame, or raise DecodeFailure with the right code."""
    try:
        return _client_decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise _classify(data, exc) from None
    except msgspec.DecodeError as exc:
        raise DecodeFailure(ErrorCode.MALFORMED, f"not a JSON message: {exc}") from None


def _classify(data: bytes | memoryview | str, exc: msgspec.ValidationError) -> DecodeFailure:
    try:
        env = _envelope_decoder.decode(data)
    except msgspec.DecodeError:
        return DecodeFailure(ErrorCode.MALFORMED, "a message must be a JSON object")
    rid = env.rid if isinstance(env.rid, int) and not isinstance(env.rid, bool) and env.rid >= 0 else None
    session = env.session if isinstance(env.session, str) and len(env.session) <= 64 else None
    if not isinstance(env.type, str) or env.type not in CLIENT_TYPES:
        shown = env.type if isinstance(env.type, str) else None
        return DecodeFailure(ErrorCode.UNKNOWN_TYPE, f"unknown message type {shown!r}", rid, session)
    return DecodeFailure(ErrorCode.INVALID_MESSAGE, str(exc), rid, session)


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
