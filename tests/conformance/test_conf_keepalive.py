"""docs/protocol.md, **Transport**: keepalive. The server pings a connection that has sent nothing
for a while; it closes one that neither answers nor reads on, and keeps one that is busy reading
a backlog (its pong waits behind the backlog, yet it is alive)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
from collections.abc import Callable
from typing import Any

import pytest
from confwire import PING, PONG, TEXT, TcpWs, frame, port_of
from rawws import session_with

BURST = 120  # controls of ~4 KB each: about 0.5 MB queued for each listener
READ_CHUNK, READ_PAUSE = 4096, 0.04  # the slow listener reads about 100 kB/s
# Pings after 1.5 s of silence, 1.5 s for the answer; a small socket buffer keeps the backlog in
# the server, where each ping waits behind it.
pytestmark = [
    pytest.mark.config(ping_idle=1.5, ping_reply=1.5, socket_send_buffer=8192),
    pytest.mark.timeout(90),
]


class SteadyReader:
    """A listener on a bare TCP stream that reads `READ_CHUNK` bytes every `READ_PAUSE` seconds,
    parses the frames it has, and answers a ping when it reaches it (behind what came before)."""

    def __init__(self, ws: TcpWs):
        self.ws = ws
        self.buffer = b""
        self.controls: set[int] = set()
        self.types: list[str] = []

    async def read_until(self, done: Callable[[], bool]) -> None:
        while not done():
            chunk = await self.ws.reader.read(READ_CHUNK)
            assert chunk, "the server closed the connection"
            self.buffer += chunk
            self._frames()
            await asyncio.sleep(READ_PAUSE)  # the slow reader itself (the product's input)

    def _frames(self) -> None:
        while len(self.buffer) >= 2:
            n, at = self.buffer[1] & 0x7F, 2
            if n == 126:
                n, at = struct.unpack("!H", self.buffer[2:4])[0], 4
            elif n == 127:
                n, at = struct.unpack("!Q", self.buffer[2:10])[0], 10
            if len(self.buffer) < at + n:
                return
            opcode, payload = self.buffer[0] & 0x0F, self.buffer[at : at + n]
            self.buffer = self.buffer[at + n :]
            if opcode == PING:
                self.ws.send_raw(frame(PONG, payload))
            elif opcode == TEXT:
                decoded = json.loads(payload)
                for m in decoded if isinstance(decoded, list) else [decoded]:
                    self.types.append(m["type"])
                    if m["type"] == "control":
                        self.controls.add(m["payload"]["k"])


async def test_a_listener_busy_reading_is_kept_and_one_that_stopped_is_closed(server: Any) -> None:
    lead, sid, _ = await session_with(server.url)
    join = {"type": "join", "session": sid, "role": "observer", "rid": 1}
    slow = await TcpWs.open(port_of(server.url), rcvbuf=8192)
    await slow.send_json({**join, "name": "Slow"})
    stopped = await TcpWs.open(port_of(server.url), rcvbuf=8192)  # never reads after this
    await stopped.send_json({**join, "name": "Gone"})
    await lead.expect("presence")
    await lead.expect("presence")  # both are members now
    blob = "x" * 4000
    for k in range(BURST):
        await lead.send({"type": "control", "session": sid, "event": "cue", "payload": {"k": k, "b": blob}})

    # The slow listener reads 100 kB/s: it reaches each ping seconds after the ping deadline (the
    # server's transport holds up to 256 KiB before it), and never sends anything of its own but
    # pongs. It gets everything, and is still connected.
    reader = SteadyReader(slow)
    async with asyncio.timeout(60):
        await reader.read_until(lambda: len(reader.controls) == BURST)
    assert reader.controls == set(range(BURST))
    await slow.send_json({"type": "time", "t0": 1.0})  # and it is still connected: answered
    async with asyncio.timeout(10):
        await reader.read_until(lambda: "time" in reader.types)

    # The one that stopped reading acknowledged nothing more and answered no ping: closed.
    with contextlib.suppress(ConnectionResetError):  # an abort, the close frame being undeliverable
        assert await stopped.eof(30)
    slow.close()
