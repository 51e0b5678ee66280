"""A thousand forced disconnects through the impairment proxy, during a stream of controls.

Random clients (the leader too) lose their connection at random moments, half of them in the
middle of a WebSocket frame (the proxy forwards half a chunk, then resets both sides). Every
client must reconnect and resume by itself, receive every control exactly once in seq order,
and end with the server's state.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import pytest
from ceremony import ceremony, check_controls, check_state, connections_settle_at
from support import ServerProcess

from collective_sync.netem import Impairment, ImpairProxy

CLIENTS = 30
CUTS = 1000
CUT_RATE = 30.0  # per second, on average (each client about once a second)


@pytest.mark.timeout(180)
async def test_a_thousand_forced_disconnects_lose_nothing(tmp_path: Path) -> None:
    # A generous grace period: a client cut again and again while reconnecting must still come
    # back as itself (a shorter one would make it rejoin as someone new, which is tested apart).
    server = ServerProcess(tmp_path, None, "--grace", "30")
    await server.start()
    jitter = Impairment(delay=0.001)
    proxy = ImpairProxy("127.0.0.1", server.port, jitter, jitter, seed=9)
    url = f"ws://127.0.0.1:{await proxy.start_tcp()}/ws"
    c = await ceremony(url, followers=CLIENTS - 1, control_every=0.005, write_every=0.5)
    rng = random.Random(2026)
    try:
        await c.until_acked(10)
        t0 = time.monotonic()
        mid_frame = 0
        cuts = 0
        while cuts < CUTS:
            await asyncio.sleep(rng.expovariate(CUT_RATE))  # the chaos' own schedule
            port = rng.choice(c.clients).local_port  # a random client; None while it has no socket
            half = rng.random() < 0.5
            if port is not None and proxy.cut(port, mid_frame=half):
                cuts += 1
                mid_frame += half
        took = time.monotonic() - t0
        await c.until_acked(len(c.acked) + 10, timeout=60)  # the leader still leads
        await c.finish()
        check_controls(c, exact=False)
        await check_state(c, url)
        resumed = [e for cl in c.clients for e in cl.connection_events if e.kind == "resumed"]
        same = sum(e.detail["same"] for e in resumed)
        print(
            f"\nchaos: {CUTS} cuts ({mid_frame} mid-frame) in {took:.1f} s; {len(resumed)} resumes "
            f"({same} as the same participant); {len(c.acked)} controls acknowledged, "
            f"{max(c.acked)} sent, 0 lost, 0 duplicated on {CLIENTS} clients"
        )
        assert len(resumed) >= CUTS // 2  # the cuts really cut (some hit a client mid-rejoin)
        assert same == len(resumed)  # within the grace period every client came back as itself
        assert [s.me for s in c.sessions] == c.ids
        await connections_settle_at(server.port, CLIENTS)
    finally:
        await c.close()
        await proxy.close()
        await server.cleanup()
