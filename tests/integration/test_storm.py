"""Reconnect storm: 1,000 clients lose the server at once (a restart) and all come back.

The clients are the Python SDK, in this one process, in 10 sessions of 100 (in one session every
resume is a presence update to each of the others: 10^6 messages for this process to decode,
which would measure the SDK, not the server). bench/durability.py measures the server alone with
1,000 bare clients in one session (docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from support import ServerProcess

from collective_sync.client import Client

CLIENTS = 1000
SESSIONS = 10


@pytest.mark.timeout(240)
async def test_a_thousand_clients_all_resume_after_a_restart(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path)
    await server.start()
    clients: list[Client] = []
    try:
        sessions = []
        for k in range(CLIENTS):
            c = await Client.connect(server.url, discipline=False)
            clients.append(c)
            if k < SESSIONS:
                sessions.append(await c.create(f"Leader {k}"))
            else:
                sessions.append(await c.join(sessions[k % SESSIONS].id, f"P{k}"))
        ids = [s.me for s in sessions]
        leaders = [s.leader for s in sessions]
        assert await server.stop() == 0
        await server.start()
        t0 = time.monotonic()
        for c in clients:
            await c.wait_for(lambda cl: cl.ready, 120)
        took = time.monotonic() - t0
        print(f"\nstorm: {CLIENTS} SDK clients resumed {took:.1f} s after the restart")
        assert [s.me for s in sessions] == ids
        assert [s.leader for s in sessions] == leaders
        attempts = [sum(e.kind == "connecting" for e in c.connection_events) for c in clients]
        assert max(attempts) <= 6  # the backoff never ran away (8 s cap after 5 attempts)
    finally:
        for c in clients:
            c.reconnect = False
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
        await server.cleanup()
