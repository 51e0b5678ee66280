"""Control ordering, polarity validation, state merge, snapshots and slow-receiver coalescing."""

from __future__ import annotations

import socket

import pytest
from support import make_config

from collective_sync.client import ServerError
from collective_sync.protocol.messages import ControlOut, StateOut
from collective_sync.server.config import ServerConfig

POLARITY = {
    "lightChannel": {"enabled": True, "amplitude": 0.8, "phase": 0.0, "resonanceMode": "harmonic"},
    "darkChannel": {"enabled": True, "amplitude": 0.4, "phase": 3.14, "resonanceMode": "chaotic"},
    "polarityBalance": -0.25,
    "darkEnergyDrift": {"driftRate": 0.01, "expansionFactor": 1.2},
}


@pytest.fixture
def server_config() -> ServerConfig:
    return make_config(rate_per_second=100_000, burst=100_000, write_high_water=4096, socket_send_buffer=4096)


async def test_controls_reach_everyone_in_order(connect) -> None:
    leader, b, c = await connect(), await connect(), await connect()
    sl = await leader.create("Lea")
    receivers = [await b.join(sl.id, "B"), await c.join(sl.id, "C")]
    for i in range(200):
        leader.send_raw(f'{{"type":"control","session":"{sl.id}","event":"step","payload":{{"i":{i}}}}}')
    for s in receivers:
        got = [await s.next_event(ControlOut, 5) for _ in range(200)]
        assert [m.seq for m in got] == list(range(1, 201))
        assert [m.payload["i"] for m in got] == list(range(200))
        assert {m.sender for m in got} == {sl.me}


@pytest.mark.parametrize(
    "patch",
    [
        {"lightChannel": {**POLARITY["lightChannel"], "amplitude": 1.5}},
        {"darkChannel": {**POLARITY["darkChannel"], "resonanceMode": "loud"}},
        {"polarityBalance": -1.01},
        {"darkEnergyDrift": {"driftRate": 0.1}},
        {"extra": 1},
    ],
)
async def test_invalid_polarity_sync_is_rejected_and_not_broadcast(connect, patch: dict) -> None:
    leader, b = await connect(), await connect()
    sl = await leader.create("Lea")
    sb = await b.join(sl.id, "B")
    with pytest.raises(ServerError) as err:
        await sl.polarity_sync({**POLARITY, **patch})
    assert err.value.code == "invalid_message"
    assert await sl.polarity_sync(POLARITY) == 1  # the rejected one consumed no seq
    first = await sb.next_event(ControlOut, 2)
    assert (first.seq, first.event, first.payload) == (1, "polarity_sync", POLARITY)


async def test_late_joiner_gets_snapshot_at_once(connect) -> None:
    leader, late = await connect(), await connect()
    sl = await leader.create("Lea")
    for i in range(10):
        await sl.set({"geometry.R": float(i), f"oscillators.{i}.freq": 100.0 + i})
    await sl.set({"geometry.r": 0.5}, ack=True)
    await sl.wait_for(lambda s: s.version == 11)
    sj = await late.join(sl.id, "Late")
    assert sj.version == 11
    assert sj.values == sl.values
    assert sj.state["geometry"] == {"R": 9.0, "r": 0.5}


async def test_last_writer_wins_by_timestamp_across_writers(connect) -> None:
    a, b = await connect(), await connect()
    sa = await a.create("Ana")
    sb = await b.join(sa.id, "Ben")
    now = a.server_time()
    area_b = f"participants.{sb.me}.mood"
    await sa.set({"geometry.R": 1.0}, at=now + 0.010, ack=True)
    await sa.set({"geometry.R": 2.0}, at=now + 0.005, ack=True)  # older stamp: loses
    await sb.set({area_b: "calm"}, at=now, ack=True)
    await sb.set({area_b: None}, at=now + 0.001, ack=True)  # None deletes
    await sb.set({area_b: "late"}, at=now + 0.0005, ack=True)  # older than the delete: loses
    for s in (sa, sb):
        await s.wait_for(lambda x: x.version == 3)
        assert s.values == {"geometry.R": 1.0}


async def test_slow_receiver_coalesces_and_still_converges(server, connect) -> None:
    leader, fast, slow = await connect(), await connect(), await connect()
    sl = await leader.create("Lea")
    sf = await fast.join(sl.id, "Fast")
    ss = await slow.join(sl.id, "Slow")
    sock = slow._transport.underlying_transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow._transport.underlying_transport.pause_reading()

    sent = 2000
    pad = "x" * 200
    for i in range(sent):
        await sl.set({"geometry.phase": i, "geometry.label": f"{pad}{i}", f"oscillators.{i % 4}.f": i})
        if i % 500 == 0:
            await sl.control("mark", {"i": i})
    await sl.set({"geometry.done": True}, ack=True)
    node = server.server.node
    assert node.coalesced_drops() > 0  # the slow receiver's updates were folded, not queued

    slow._transport.underlying_transport.resume_reading()
    await sf.wait_for(lambda s: s.version == sl.version and s.values == sl.values, 10)
    await ss.wait_for(lambda s: s.version == sl.version, 10)
    assert ss.values == sl.values
    events = []
    while ss._events:
        events.append(ss._events.popleft())
    states = [e for e in events if isinstance(e, StateOut)]
    controls = [e for e in events if isinstance(e, ControlOut)]
    assert len(states) < sent
    assert any(e.coalesced for e in states)
    assert [c.payload["i"] for c in controls] == [0, 500, 1000, 1500]  # control is never dropped
    versions = [e.v for e in states]
    assert versions == sorted(versions)
