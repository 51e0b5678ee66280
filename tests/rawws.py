"""A raw WebSocket client for protocol tests: the `websockets` library, not our SDK.

Tests written with it check the server against docs/protocol.md as any third-party client sees
it: exact frames in, exact frames and close codes out.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

TIMEOUT = 5.0


class Raw:
    """One connection; `recv()` yields server messages one by one (arrays are unpacked)."""

    def __init__(self, ws: ClientConnection):
        self.ws = ws
        self.pending: list[dict[str, Any]] = []
        self.welcome: dict[str, Any] = {}

    @classmethod
    async def open(cls, url: str) -> Raw:
        ws = await connect(url, max_size=None, compression=None, ping_interval=None)
        raw = cls(ws)
        raw.welcome = await raw.recv()
        assert raw.welcome["type"] == "welcome"
        return raw

    async def send(self, msg: dict[str, Any] | str | bytes, text: bool = True) -> None:
        data = json.dumps(msg) if isinstance(msg, dict) else msg
        await self.ws.send(data, text=text)

    async def recv(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        while not self.pending:
            frame = await asyncio.wait_for(self.ws.recv(), timeout)
            decoded = json.loads(frame)
            self.pending.extend(decoded if isinstance(decoded, list) else [decoded])
        return self.pending.pop(0)

    async def expect(self, kind: str, timeout: float = TIMEOUT, **fields: Any) -> dict[str, Any]:
        """The next message of type `kind` matching `fields` (others before it are skipped)."""
        while True:
            msg = await self.recv(timeout)
            if msg["type"] == kind and all(msg.get(k) == v for k, v in fields.items()):
                return msg

    async def request(self, msg: dict[str, Any], rid: int) -> dict[str, Any]:
        """Send with `rid`; the reply (or error) that echoes it."""
        await self.send({**msg, "rid": rid})
        while True:
            reply = await self.recv()
            if reply.get("rid") == rid:
                return reply

    async def error(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        return await self.expect("error", timeout)

    async def closed(self, timeout: float = TIMEOUT) -> int | None:
        """Read until the connection ends (messages stay in `pending`); the close code the server
        sent, or None when no close frame arrived."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    frame = await self.ws.recv()
                    decoded = json.loads(frame)
                    self.pending.extend(decoded if isinstance(decoded, list) else [decoded])
        except ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd is not None else None

    async def close(self) -> None:
        await self.ws.close()


async def session_with(url: str, name: str = "Lea") -> tuple[Raw, str, str]:
    """A raw leader that created a session: (connection, session id, its participant id)."""
    raw = await Raw.open(url)
    joined = await raw.request({"type": "create", "name": name}, rid=1)
    assert joined["type"] == "joined", joined
    return raw, joined["session"], joined["you"]
