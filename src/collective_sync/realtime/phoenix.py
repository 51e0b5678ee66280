"""Phoenix channel frames as `@supabase/realtime-js` speaks them, apart from any socket.

Serializer 2.0.0 (the client's default): text frames are JSON arrays
`[join_ref, ref, topic, event, payload]`, and a client broadcast comes as a binary frame
(kind 3, "user broadcast push") with length-prefixed header fields and a JSON payload.
Serializer 1.0.0: text frames are JSON objects with the same five fields. No library speaks
the server side of these in Python, hence this small codec.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from ..protocol.codec import too_deep

VSN_1 = "1.0.0"
VSN_2 = "2.0.0"
VERSIONS = (VSN_1, VSN_2)
USER_BROADCAST_PUSH = 3  # binary frame kind: a client's broadcast
JSON_ENCODING = 1  # binary broadcast payload encoding: JSON (0 is raw bytes, not served here)
_HEADER = 7  # kind, join_ref, ref, topic and event lengths, metadata length, encoding

_json = msgspec.json.Decoder()
_encode = msgspec.json.Encoder().encode


class FrameError(ValueError):
    """A frame that is not a Phoenix message; the text says what is wrong."""


@dataclass(slots=True)
class Message:
    join_ref: str | None
    ref: str | None
    topic: str
    event: str
    payload: Any


def _text(value: object, what: str, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and optional:
        return str(value)  # refs are strings in realtime-js; a number is as good
    if not isinstance(value, str) or len(value) > 255:
        raise FrameError(f"{what} must be a string of at most 255 characters")
    return value


def _parse(data: bytes) -> Any:
    if too_deep(data):
        raise FrameError("nested too deeply")
    try:
        return _json.decode(data)
    except msgspec.DecodeError as exc:
        raise FrameError(f"not JSON: {exc}") from None
    except UnicodeDecodeError as exc:  # msgspec checks UTF-8 inside strings, and raises this
        raise FrameError(f"not valid UTF-8 (byte {exc.start})") from None


def decode(data: bytes, binary: bool, vsn: str) -> Message:
    """One client frame as a message, or FrameError."""
    if binary:
        return _decode_broadcast_push(data)
    obj = _parse(data)
    if vsn == VSN_2:
        if not isinstance(obj, list) or len(obj) != 5:
            raise FrameError("a 2.0.0 frame is [join_ref, ref, topic, event, payload]")
        join_ref, ref, topic, event, payload = obj
    else:
        if not isinstance(obj, dict):
            raise FrameError("a 1.0.0 frame is an object {topic, event, payload, ref, join_ref}")
        join_ref, ref = obj.get("join_ref"), obj.get("ref")
        topic, event, payload = obj.get("topic"), obj.get("event"), obj.get("payload")
    return Message(
        _text(join_ref, "join_ref", True),
        _text(ref, "ref", True),
        _text(topic, "topic") or "",
        _text(event, "event") or "",
        payload if payload is not None else {},
    )


def _decode_broadcast_push(data: bytes) -> Message:
    if len(data) < _HEADER or data[0] != USER_BROADCAST_PUSH:
        raise FrameError("a binary frame must be a user broadcast push (kind 3)")
    sizes = data[1:6]
    encoding = data[6]
    if encoding != JSON_ENCODING:
        raise FrameError("binary broadcast payloads are not served here; send JSON")
    fields: list[str] = []
    offset = _HEADER
    for size in sizes:
        chunk = data[offset : offset + size]
        if len(chunk) != size:
            raise FrameError("a binary frame shorter than its header says")
        try:
            fields.append(chunk.decode())
        except UnicodeDecodeError:
            raise FrameError("a binary frame header that is not UTF-8") from None
        offset += size
    join_ref, ref, topic, event, metadata = fields
    payload: dict[str, Any] = {"type": "broadcast", "event": event, "payload": _parse(data[offset:])}
    if metadata:
        meta = _parse(metadata.encode())
        if isinstance(meta, dict):
            payload.update({k: v for k, v in meta.items() if k not in payload})
    return Message(join_ref or None, ref or None, topic, "broadcast", payload)


def encode(msg: Message, vsn: str) -> bytes:
    """A server message as a text frame."""
    if vsn == VSN_2:
        return _encode([msg.join_ref, msg.ref, msg.topic, msg.event, msg.payload])
    return _encode(
        {
            "join_ref": msg.join_ref,
            "ref": msg.ref,
            "topic": msg.topic,
            "event": msg.event,
            "payload": msg.payload,
        }
    )
