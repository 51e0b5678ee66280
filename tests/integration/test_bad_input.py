"""Bad input: a typed error (or a documented close) to the sender, and nothing else changes.

Each case runs with two sessions present. After the bad input, the leader of session A sends a
marker control and a state value; the bystander in A must see the marker as seq 1 and only the
marker's state (so nothing from the bad input got in), and session B must be untouched.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest
from support import make_config

from collective_sync.client import Client, ServerError
from collective_sync.client.session import Session
from collective_sync.protocol.messages import Control, ControlOut, Error
from collective_sync.server.config import ServerConfig

MAX = 2048


@pytest.fixture
def server_config() -> ServerConfig:
    return make_config(max_message_bytes=MAX, rate_per_second=50, burst=20, max_sessions_per_connection=2)


@dataclass
class World:
    leader: Session
    member: Client  # the connection that misbehaves, a participant in A
    a_member: Session
    bystander: Session  # another participant of A
    b_leader: Session  # session B, which must be untouched


@pytest.fixture
async def world(connect) -> World:
    la, m, by, lb = await connect(), await connect(), await connect(), await connect()
    sa = await la.create("Lea")
    sm = await m.join(sa.id, "Mal")
    sby = await by.join(sa.id, "Bys")
    sb = await lb.create("Other")
    await sb.set({"geometry.R": 7.0}, ack=True)
    return World(sa, m, sm, sby, sb)


async def assert_nothing_changed(w: World) -> None:
    seq = await w.leader.control("marker", {})
    await w.leader.set({"geometry.marker": 1}, ack=True)
    got = await w.bystander.next_event(ControlOut, 2)
    assert (got.seq, got.event) == (seq, "marker")
    assert seq == 1
    await w.bystander.wait_for(lambda s: "geometry.marker" in s.values, 2)
    assert w.bystander.values == {"geometry.marker": 1}
    assert set(w.bystander.participants) == set(w.leader.participants)
    assert w.b_leader.values == {"geometry.R": 7.0}
    assert list(w.b_leader.participants) == [w.b_leader.me]


async def next_error(client: Client) -> Error:
    await client.wait_for(lambda c: bool(c.errors), 2)
    return client.errors.popleft()


RAW_CASES: dict[str, tuple[bytes | str, bool, str]] = {
    "malformed json": ('{"type": "join", ', False, "malformed"),
    "binary garbage": (b"\xff\x00\x13\x37", True, "malformed"),
    "not an object": ("[1, 2, 3]", False, "malformed"),
    "unknown type": ('{"type": "teleport", "rid": 9}', False, "unknown_type"),
    "missing type": ('{"session": "abc"}', False, "unknown_type"),
    "missing field": ('{"type": "join", "rid": 4}', False, "invalid_message"),
    "wrong type": ('{"type": "time", "t0": "noon"}', False, "invalid_message"),
    "too large": (json.dumps({"type": "meta", "session": "x", "meta": {"p": "x" * MAX}}), False, "too_large"),
}


@pytest.mark.parametrize("case", list(RAW_CASES))
async def test_raw_bad_frames_get_typed_errors(world: World, case: str) -> None:
    data, binary, code = RAW_CASES[case]
    world.member.send_raw(data, binary=binary)
    err = await next_error(world.member)
    assert err.code == code
    if case in ("unknown type", "missing field"):
        assert err.rid == (9 if case == "unknown type" else 4)
    await assert_nothing_changed(world)


async def _participant_control(w: World) -> None:
    await w.a_member.control("polarity_flip", {})


async def _participant_leader_state(w: World) -> None:
    await w.a_member.set({"geometry.R": 99.0}, ack=True)


async def _other_area(w: World) -> None:
    await w.a_member.set({f"participants.{w.bystander.me}.hr": 1}, ack=True)


async def _unknown_root(w: World) -> None:
    await w.a_member.set({"secrets.key": 1}, ack=True)


async def _bad_timestamp(w: World) -> None:
    await w.leader.set({"geometry.R": 1.0}, at=w.leader.client.server_time() + 3600, ack=True)


async def _handover_unknown(w: World) -> None:
    await w.leader.handover("p00000000")


async def _missing_session(w: World) -> None:
    await w.member.join("missing", "Mal")


async def _not_in_session(w: World) -> None:
    await w.member.request(Control(session=w.b_leader.id, event="x"))


async def _already_joined(w: World) -> None:
    await w.member.join(w.leader.id, "Mal again")


async def _big_meta(w: World) -> None:
    await w.a_member.update_meta({"blob": "x" * 1500})


REQUEST_CASES: dict[str, tuple[Callable[[World], Awaitable[None]], str]] = {
    "participant sends control": (_participant_control, "not_leader"),
    "participant writes leader state": (_participant_leader_state, "not_leader"),
    "write another's area": (_other_area, "forbidden"),
    "unknown state root": (_unknown_root, "invalid_path"),
    "timestamp far off": (_bad_timestamp, "bad_timestamp"),
    "handover to unknown": (_handover_unknown, "invalid_target"),
    "join missing session": (_missing_session, "session_not_found"),
    "not in session": (_not_in_session, "not_in_session"),
    "already joined": (_already_joined, "already_joined"),
    "meta too large": (_big_meta, "invalid_message"),
}


@pytest.mark.parametrize("case", list(REQUEST_CASES))
async def test_refused_requests_get_typed_errors(world: World, case: str) -> None:
    action, code = REQUEST_CASES[case]
    with pytest.raises(ServerError) as err:
        await action(world)
    assert err.value.code == code
    await assert_nothing_changed(world)


async def test_observer_cannot_write(world: World, connect) -> None:
    o = await connect()
    so = await o.join(world.leader.id, "Obs", role="observer")
    with pytest.raises(ServerError) as err:
        await so.set({f"participants.{so.me}.x": 1}, ack=True)
    assert err.value.code == "forbidden"
    with pytest.raises(ServerError) as err:
        await so.control("x")
    assert err.value.code == "not_leader"
    await assert_nothing_changed(world)


async def test_handover_to_observer_is_refused(world: World, connect) -> None:
    o = await connect()
    so = await o.join(world.leader.id, "Obs", role="observer")
    with pytest.raises(ServerError) as err:
        await world.leader.handover(so.me)
    assert err.value.code == "invalid_target"
    assert world.leader.is_leader


async def test_too_many_sessions_per_connection(world: World) -> None:
    await world.member.create("Mal's own")  # second session for this connection (limit 2)
    with pytest.raises(ServerError) as err:
        await world.member.create("one too many")
    assert err.value.code == "too_many_sessions"
    await assert_nothing_changed(world)


async def test_huge_frame_closes_with_1009(world: World) -> None:
    world.member.send_raw("x" * (1 << 20) + "x")  # above max(16 x limit, 1 MiB): not even read
    closed = await world.member.wait_closed(5)
    assert closed.code == 1009
    await world.bystander.wait_for(lambda s: not s.participants[world.a_member.me].connected, 2)
    await assert_nothing_changed(world)


async def test_flooding_is_limited_then_closed(world: World) -> None:
    frame = f'{{"type":"meta","session":"{world.a_member.id}","meta":{{}}}}'
    for _ in range(200):  # burst 20 at 50/s: most are dropped, the debt passes the burst
        if world.member.closed:
            break
        world.member.send_raw(frame)
    closed = await world.member.wait_closed(5)
    assert closed.code == 1008
    rate_errors = [e for e in world.member.errors if e.code == "rate_limited"]
    assert len(rate_errors) == 1  # told once, not once per dropped message
    await assert_nothing_changed(world)
