"""A ceremony survives a deploy (SIGTERM) and a crash (SIGKILL) of the real server process.

A leader streams controls and state, three followers write their own state; the server is
stopped or killed mid-stream and started again on the same data directory and port. Every client
must come back by itself as the same participant, with no control lost or duplicated, and end
with the same state as the server.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from ceremony import all_back, ceremony, check_controls, check_state, connections_settle_at
from support import ServerProcess

from collective_sync.client import Client


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
async def test_a_ceremony_survives_a_restart(tmp_path: Path, how: str) -> None:
    server = ServerProcess(tmp_path)
    await server.start()
    c = await ceremony(server.url, followers=3)
    try:
        await c.until_acked(30)
        if how == "sigterm":
            assert await server.stop() == 0
        else:
            await server.kill()
        before = len(c.acked)
        await server.start()
        took = await all_back(c)
        print(f"{how}: all {len(c.clients)} clients resumed {took:.2f} s after the restart")
        for s, pid in zip(c.sessions, c.ids, strict=True):
            assert s.me == pid, "came back as someone else"
            assert s.leader == c.ids[0], "the leader lost the lead"
            assert (s.epoch == c.epoch) is (how == "sigterm")  # a crash says what it lost
        await connections_settle_at(server.port, len(c.clients))
        await c.until_acked(before + 30)
        await c.finish()
        check_controls(c, exact=how == "sigterm")
        await check_state(c, server.url)
        events = [e.kind for e in c.clients[1].connection_events]
        assert events[:1] == ["open"] and "lost" in events and events[-1] == "resumed"
    finally:
        await c.close()
        await server.cleanup()


async def test_whoever_was_told_joined_survives_a_crash_right_after(tmp_path: Path) -> None:
    """`joined` is sent only once the participant is durable: kill the server the moment the last
    joiner hears it, and every joiner still resumes as itself."""
    server = ServerProcess(tmp_path)
    await server.start()
    clients = [await Client.connect(server.url, discipline=False) for _ in range(20)]
    try:
        lead = await clients[0].create("Leader")
        sessions = [
            lead,
            *await asyncio.gather(*(c.join(lead.id, f"P{k}") for k, c in enumerate(clients[1:]))),
        ]
        await server.kill()
        ids = [s.me for s in sessions]
        await server.start()
        for c in clients:
            await c.wait_for(lambda cl: cl.ready, 30)
        assert [s.me for s in sessions] == ids
        assert all(s.ended is None for s in sessions)
    finally:
        for c in clients:
            await c.close()
        await server.cleanup()
