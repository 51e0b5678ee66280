"""Wire-level helpers for the conformance tests: raw TCP WebSocket frames and plain HTTP.

Nothing here uses the project's code: `TcpWs` speaks RFC 6455 by hand (for what the `websockets`
library refuses to send, such as a bare continuation frame), `http` is urllib, and `Obs` wraps the
raw client of tests/rawws.py with the few reads the tests share.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import socket
import struct
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rawws import Raw

TIMEOUT = 5.0
TEXT, BINARY, CONTINUATION, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA


def ws_url(port: int) -> str:
    return f"ws://127.0.0.1:{port}/ws"


def port_of(url: str) -> int:
    match = re.search(r":(\d+)/", url)
    assert match is not None
    return int(match.group(1))


# --- raw TCP WebSocket ------------------------------------------------------------------------


def frame(opcode: int, payload: bytes, fin: bool = True, length: int | None = None) -> bytes:
    """One masked client frame; `length` overrides the length in the header (payload not sent)."""
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 1 << 16:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    mask = os.urandom(4)
    if length is not None:
        return head + mask
    return head + mask + _mask(payload, mask)


def _mask(payload: bytes, mask: bytes) -> bytes:
    key = (mask * (len(payload) // 4 + 1))[: len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(len(payload), "big")


@dataclass
class Frame:
    fin: bool
    opcode: int
    payload: bytes

    @property
    def close_code(self) -> int | None:
        return struct.unpack("!H", self.payload[:2])[0] if len(self.payload) >= 2 else None

    def messages(self) -> list[dict[str, Any]]:
        decoded = json.loads(self.payload)
        return decoded if isinstance(decoded, list) else [decoded]


class TcpWs:
    """A WebSocket client on a bare TCP stream: exact frames out, every frame in."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer
        self.response_head = b""

    @classmethod
    async def connect(cls, port: int, rcvbuf: int | None = None) -> TcpWs:
        """TCP connection only (no upgrade yet)."""
        if rcvbuf is None:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        else:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
            reader, writer = await asyncio.open_connection(sock=sock, limit=8 * 1024)  # reads stop soon
        return cls(reader, writer)

    @classmethod
    async def open(cls, port: int, rcvbuf: int | None = None, extra: str = "") -> TcpWs:
        """Connected and upgraded; the welcome frame is still unread."""
        ws = await cls.connect(port, rcvbuf)
        await ws.upgrade(extra)
        assert ws.response_head.startswith(b"HTTP/1.1 101"), ws.response_head
        return ws

    async def upgrade(self, extra: str = "") -> None:
        key = base64.b64encode(os.urandom(16)).decode()
        self.writer.write(
            (
                "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
            ).encode("latin-1")
        )
        self.response_head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), TIMEOUT)

    def send_raw(self, data: bytes) -> None:
        self.writer.write(data)

    async def send(self, opcode: int, payload: bytes, fin: bool = True) -> None:
        self.writer.write(frame(opcode, payload, fin))
        await self.writer.drain()

    async def send_json(self, *msgs: dict[str, Any]) -> None:
        """Each message in its own text frame, all in one TCP write."""
        self.writer.write(b"".join(frame(TEXT, json.dumps(m).encode()) for m in msgs))
        await self.writer.drain()

    async def read_frame(self, timeout: float = TIMEOUT) -> Frame:
        async with asyncio.timeout(timeout):
            b0, b1 = await self.reader.readexactly(2)
            assert not b1 & 0x80, "server frames must not be masked"
            n = b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
            return Frame(bool(b0 & 0x80), b0 & 0x0F, await self.reader.readexactly(n))

    async def data_frame(self, timeout: float = TIMEOUT) -> Frame:
        """The next frame that is not a ping/pong."""
        while True:
            f = await self.read_frame(timeout)
            if f.opcode not in (PING, PONG):
                return f

    async def close_frame(self, timeout: float = TIMEOUT) -> Frame:
        """Read (and discard) data frames until the close frame."""
        while True:
            f = await self.read_frame(timeout)
            if f.opcode == CLOSE:
                return f

    async def eof(self, timeout: float = TIMEOUT) -> bool:
        """True once the server has closed its side (FIN), reading and dropping what comes first."""
        async with asyncio.timeout(timeout):
            while await self.reader.read(65536):
                pass
        return True

    def close(self) -> None:
        self.writer.close()


# --- HTTP -------------------------------------------------------------------------------------


@dataclass
class HttpResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def _http(base: str, method: str, path: str) -> HttpResponse:
    req = urllib.request.Request(base + path, method=method)
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
            return HttpResponse(resp.status, dict(resp.headers.items()), resp.read())
    except urllib.error.HTTPError as exc:
        return HttpResponse(exc.code, dict(exc.headers.items()), exc.read())


async def http(base: str, path: str, method: str = "GET") -> HttpResponse:
    return await asyncio.to_thread(_http, base, method, path)


async def healthz(base: str) -> dict[str, Any]:
    resp = await http(base, "/healthz")
    assert resp.status == 200
    body: dict[str, Any] = resp.json()
    return body


async def wait_healthz(base: str, timeout: float = TIMEOUT, **expected: int) -> dict[str, Any]:
    """Poll /healthz until it shows `expected` (a condition with a deadline, not a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        body = await healthz(base)
        if all(body.get(k) == v for k, v in expected.items()):
            return body
        assert time.monotonic() < deadline, f"/healthz is {body}, expected {expected}"
        await asyncio.sleep(0.02)


def metric(text: str, name: str, labels: str = "") -> float | None:
    """The value of one sample of Prometheus text, or None if it is absent."""
    pattern = "^" + re.escape(name + (("{" + labels + "}") if labels else "")) + r" (\S+)$"
    match = re.search(pattern, text, re.MULTILINE)
    return float(match.group(1)) if match else None


# --- raw WebSocket client helpers -------------------------------------------------------------


async def member(
    url: str, sid: str, name: str = "Pat", role: str = "participant"
) -> tuple[Raw, dict[str, Any]]:
    """A raw connection that joined `sid`: (connection, its `joined`)."""
    raw = await Raw.open(url)
    joined = await raw.request({"type": "join", "session": sid, "name": name, "role": role}, rid=1)
    assert joined["type"] == "joined", joined
    return raw, joined


async def snapshot(url: str, sid: str) -> dict[str, Any]:
    """What a fresh observer is told on joining: state, seq, participants, leader, settings."""
    raw, joined = await member(url, sid, "Probe", "observer")
    await raw.close()
    return joined


async def barrier(raw: Raw, rid: int = 900_000) -> list[dict[str, Any]]:
    """Everything the server sent this connection before the reply to a request made now.

    A `join` of a session that does not exist is answered in order with every other reply, and
    changes nothing anywhere; so messages that have not arrived before it were never sent.
    """
    await raw.send({"type": "join", "session": "no-such-session-x", "name": "b", "rid": rid})
    seen: list[dict[str, Any]] = []
    while True:
        msg = await raw.recv()
        if msg.get("rid") == rid and msg["type"] == "error":
            assert msg["code"] == "session_not_found"
            return seen
        seen.append(msg)


async def server_now(raw: Raw) -> float:
    """The server's network time now, from a `time` exchange (other messages stay pending)."""
    t0 = time.time()
    await raw.send({"type": "time", "t0": t0})
    while True:
        frame_ = await asyncio.wait_for(raw.ws.recv(), TIMEOUT)
        decoded = json.loads(frame_)
        msgs = decoded if isinstance(decoded, list) else [decoded]
        for m in msgs:
            if m["type"] == "time" and m["t0"] == t0:
                return float(m["t2"])
        raw.pending.extend(msgs)


async def take_if(
    raw: Raw, match: Callable[[dict[str, Any]], bool], timeout: float = TIMEOUT
) -> dict[str, Any]:
    """The first message (received or yet to come) for which `match` is true; unlike
    `Raw.expect`, the messages it passes over stay pending, in order."""
    async with asyncio.timeout(timeout):
        while True:
            for i, msg in enumerate(raw.pending):
                if match(msg):
                    return raw.pending.pop(i)
            decoded = json.loads(await raw.ws.recv())
            raw.pending.extend(decoded if isinstance(decoded, list) else [decoded])


async def take(raw: Raw, kind: str, timeout: float = TIMEOUT, **fields: Any) -> dict[str, Any]:
    """The first message of type `kind` matching `fields` (see `take_if`)."""
    return await take_if(
        raw, lambda m: m["type"] == kind and all(m.get(k) == v for k, v in fields.items()), timeout
    )


async def reply(raw: Raw, msg: dict[str, Any], rid: int) -> dict[str, Any]:
    """Send with `rid`; the reply that echoes it. Other messages stay pending (cf. `Raw.request`)."""
    await raw.send({**msg, "rid": rid})
    return await take_if(
        raw, lambda m: m.get("rid") == rid and m["type"] in ("joined", "left", "ack", "error")
    )
