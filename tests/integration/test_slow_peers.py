"""Peers that stop reading: closed once (4002), costing nothing after the decision."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from rawws import session_with
from support import make_config
from websockets.asyncio.client import connect

from collective_sync.server.config import ServerConfig

PAYLOAD = {"blob": "x" * 30_000}


@pytest.fixture
def server_config() -> ServerConfig:
    return make_config(rate_per_second=5_000, burst=5_000, socket_send_buffer=64 * 1024)


async def test_a_peer_that_does_not_read_is_dropped_once_and_costs_nothing_after(server) -> None:
    node = server.server.node
    raw, sid, _ = await session_with(server.url)
    sleeper = await connect(server.url, max_queue=1, ping_interval=None)  # stops reading soon
    await sleeper.send(json.dumps({"type": "join", "session": sid, "name": "Zzz", "role": "observer"}))
    await raw.expect("presence")
    control: dict[str, Any] = {"type": "control", "session": sid, "event": "e", "payload": PAYLOAD}
    rids = iter(range(10, 1_000_000))
    try:
        async with asyncio.timeout(30):
            while len(node.conns) > 1:  # until the server gives up on the sleeper
                # one at a time, acknowledged: the leader reads its own echoes as fast as it sends
                await raw.request(control, next(rids))
        assert node.stats.slow_closes == 1
        (survivor,) = node.conns.values()
        for _ in range(300):  # 9 MB more after the decision: not queued, not counted again
            await raw.request(control, next(rids))
        assert node.stats.slow_closes == 1
        assert list(node.conns.values()) == [survivor]
    finally:
        await sleeper.close()
