"""docs/protocol.md, **State document** (paths, roots, limits, tombstones, merge, slow receivers),
with a raw WebSocket client.

The table mapping each doc statement to its test is in tests/conformance/README.md.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from confwire import TcpWs, barrier, http, member, metric, reply, server_now, snapshot, take
from rawws import Raw, session_with

KEYS = 4096


async def leader_and_pat(url: str) -> tuple[Raw, str, str, Raw, str, float]:
    """(leader, session, leader id, participant, participant id, a valid `at`)."""
    lea, sid, lea_id = await session_with(url)
    pat, joined = await member(url, sid)
    return lea, sid, lea_id, pat, joined["you"], await server_now(lea)


def state_set(sid: str, at: float, changes: dict[str, Any]) -> dict[str, Any]:
    return {"type": "state_set", "session": sid, "at": at, "set": changes}


async def values(url: str, sid: str) -> dict[str, Any]:
    return dict((await snapshot(url, sid))["state"]["values"])


@pytest.mark.parametrize(
    ("path", "ok"),
    [
        ("geometry.a", True),
        ("geometry", True),
        ("geometry.a.b.c.d.e.f.g", True),  # 8 segments
        ("geometry.a.b.c.d.e.f.g.h", False),  # 9
        ("geometry." + "s" * 64, True),
        ("geometry." + "s" * 65, False),
        ("geometry..a", False),
        ("geometry.a.", False),
        ("geometry.a b", False),
        ("geometry.ä", False),
        ("geometry.a/b", False),
        ("polarity.Light_1-x", True),
        ("oscillators.0.freq", True),
    ],
)
async def test_path_grammar(server, path: str, ok: bool) -> None:
    lea, sid, _ = await session_with(server.url)
    answer = await reply(lea, state_set(sid, await server_now(lea), {path: 1}), rid=2)
    if ok:
        assert answer["type"] == "ack", answer
        assert await values(server.url, sid) == {path: 1}
    else:
        assert (answer["code"], answer["session"]) == ("invalid_path", sid), answer
        assert await values(server.url, sid) == {}


async def test_who_may_write_which_root(server) -> None:
    lea, sid, lea_id, pat, pid, at = await leader_and_pat(server.url)
    for root in ("oscillators", "geometry", "polarity"):
        assert (await reply(lea, state_set(sid, at, {f"{root}.x": 1}), 2))["type"] == "ack"
        err = await reply(pat, state_set(sid, at, {f"{root}.y": 1}), 3)
        assert (err["code"], err["rid"], err["session"]) == ("not_leader", 3, sid)
    assert (await reply(pat, state_set(sid, at, {f"participants.{pid}.hr": 60}), 4))["type"] == "ack"
    assert (await reply(pat, state_set(sid, at, {f"participants.{pid}.bio.gsr": 1}), 5))["type"] == "ack"
    assert (await reply(lea, state_set(sid, at, {f"participants.{lea_id}.hr": 70}), 6))["type"] == "ack"
    for rid, (writer, path) in enumerate(
        [
            (pat, f"participants.{lea_id}.hr"),
            (lea, f"participants.{pid}.hr"),
            (pat, "participants.p00000000.x"),
        ],
        start=10,
    ):
        assert (await reply(writer, state_set(sid, at, {path: 1}), rid))["code"] == "forbidden", path
    for rid, path in enumerate(["other.x", "participantsX.y", "settings.a", "x"], start=20):
        assert (await reply(lea, state_set(sid, at, {path: 1}), rid))["code"] == "invalid_path", path
    assert await values(server.url, sid) == {
        "oscillators.x": 1,
        "geometry.x": 1,
        "polarity.x": 1,
        f"participants.{pid}.hr": 60,
        f"participants.{pid}.bio.gsr": 1,
        f"participants.{lea_id}.hr": 70,
    }


async def test_observers_write_nothing(server) -> None:
    lea, sid, _ = await session_with(server.url)
    obs, joined = await member(server.url, sid, "Obs", "observer")
    at = await server_now(lea)
    for rid, path in enumerate(["geometry.a", f"participants.{joined['you']}.hr", "nowhere.x"], start=2):
        err = await reply(obs, state_set(sid, at, {path: 1}), rid)
        assert (err["code"], err["session"]) == ("forbidden", sid), path
    assert await values(server.url, sid) == {}


async def test_value_and_parent_conflict(server) -> None:
    lea, sid, _ = await session_with(server.url)
    at = await server_now(lea)
    await reply(lea, state_set(sid, at, {"geometry.a": 1, "geometry.b.c": 2}), 2)
    assert (await reply(lea, state_set(sid, at, {"geometry.a.x": 1}), 3))["code"] == "invalid_path"
    assert (await reply(lea, state_set(sid, at, {"geometry.b": 1}), 4))["code"] == "invalid_path"
    assert (await reply(lea, state_set(sid, at, {"geometry": 1}), 5))["code"] == "invalid_path"
    assert await values(server.url, sid) == {"geometry.a": 1, "geometry.b.c": 2}
    await reply(lea, state_set(sid, at, {"geometry.a": None}), 6)  # deleted: free to be a parent
    assert (await reply(lea, state_set(sid, at, {"geometry.a.x": 1}), 7))["type"] == "ack"


@pytest.mark.parametrize(
    "changes",
    [
        {"geometry.e": 1, "geometry.e.f": 2},
        {"geometry.e.f": 2, "geometry.e": None},
        {"geometry.e": None, "geometry.e.f": None},
        {"geometry": 1, "geometry.a.b": 1},
    ],
)
async def test_path_and_prefix_in_one_update(server, changes: dict[str, Any]) -> None:
    lea, sid, _ = await session_with(server.url)
    err = await reply(lea, state_set(sid, await server_now(lea), changes), 2)
    assert err["code"] == "invalid_path"
    assert (await snapshot(server.url, sid))["state"] == {"v": 0, "values": {}}


async def test_set_size_limits(server) -> None:
    lea, sid, _ = await session_with(server.url)
    at = await server_now(lea)
    assert (await reply(lea, state_set(sid, at, {}), 2))["code"] == "invalid_message"
    over = {f"geometry.k{i}": i for i in range(257)}
    assert (await reply(lea, state_set(sid, at, over), 3))["code"] == "invalid_message"
    full = {f"geometry.k{i}": i for i in range(256)}
    assert (await reply(lea, state_set(sid, at, full), 4))["type"] == "ack"
    assert len(await values(server.url, sid)) == 256


async def test_state_at_is_required_and_checked(server) -> None:
    lea, sid, _ = await session_with(server.url)
    now = await server_now(lea)
    missing = await reply(lea, {"type": "state_set", "session": sid, "set": {"geometry.a": 1}}, 2)
    assert missing["code"] == "invalid_message"
    for rid, at in ((3, now + 31), (4, now - 31)):
        assert (await reply(lea, state_set(sid, at, {"geometry.a": 1}), rid))["code"] == "bad_timestamp"
    assert (await reply(lea, state_set(sid, now - 29, {"geometry.a": 1}), 5))["type"] == "ack"


async def test_null_deletes_a_path(server) -> None:
    lea, sid, _lea_id, pat, _pid, at = await leader_and_pat(server.url)
    await reply(lea, state_set(sid, at, {"geometry.a": 1, "geometry.b": 2}), 2)
    await reply(lea, state_set(sid, at + 0.001, {"geometry.a": None}), 3)
    state = await take(pat, "state", v=2)
    assert state["set"] == {"geometry.a": None}
    assert await values(server.url, sid) == {"geometry.b": 2}


async def test_live_path_limit(server) -> None:
    lea, sid, _ = await session_with(server.url)
    at = await server_now(lea)
    for chunk in range(KEYS // 256):
        batch = {f"geometry.c{chunk}.k{i}": 1 for i in range(256)}
        assert (await reply(lea, state_set(sid, at, batch), chunk))["type"] == "ack"
    v = (await snapshot(server.url, sid))["state"]["v"]
    err = await reply(lea, state_set(sid, at, {"geometry.one_more": 1}), 100)
    assert (err["code"], err["session"]) == ("state_full", sid)
    # New paths are counted before the update's own deletions.
    err = await reply(lea, state_set(sid, at, {"geometry.one_more": 1, "geometry.c0.k0": None}), 101)
    assert err["code"] == "state_full"
    assert (await snapshot(server.url, sid))["state"]["v"] == v
    # Overwriting a live path is not a new path.
    assert (await reply(lea, state_set(sid, at, {"geometry.c0.k0": 2}), 102))["type"] == "ack"
    # Deleted paths do not count.
    assert (await reply(lea, state_set(sid, at, {"geometry.c0.k1": None}), 103))["type"] == "ack"
    assert (await reply(lea, state_set(sid, at, {"geometry.one_more": 1}), 104))["type"] == "ack"
    assert len(await values(server.url, sid)) == KEYS


async def test_tombstone_keeps_a_deleted_path_deleted(server) -> None:
    lea, sid, _ = await session_with(server.url)
    at = await server_now(lea)
    await reply(lea, state_set(sid, at, {"geometry.a": 1}), 2)
    await reply(lea, state_set(sid, at + 1, {"geometry.a": None}), 3)
    v = (await snapshot(server.url, sid))["state"]["v"]
    assert (await reply(lea, state_set(sid, at + 0.5, {"geometry.a": 5}), 4))["type"] == "ack"
    after = await snapshot(server.url, sid)
    assert (after["state"]["values"], after["state"]["v"]) == ({}, v)
    assert (await reply(lea, state_set(sid, at + 1, {"geometry.a": 6}), 5))["type"] == "ack"
    assert await values(server.url, sid) == {"geometry.a": 6}


async def _churn(raw: Raw, sid: str, at: float, prefix: str, n: int) -> None:
    """`n` deletions of never-written paths under `prefix`, all stamped `at` (n tombstones)."""
    for start in range(0, n, 256):
        batch = {f"{prefix}.d{i}": None for i in range(start, min(n, start + 256))}
        await raw.send(state_set(sid, at, batch))
    await barrier(raw)


@pytest.mark.config(rate_per_second=10_000, burst=10_000)
async def test_forgotten_tombstone_becomes_the_floor_of_its_area(server) -> None:
    lea, sid, _ = await session_with(server.url)
    at = await server_now(lea)
    await reply(lea, state_set(sid, at, {"geometry.first": None}), 2)  # the oldest tombstone
    await _churn(lea, sid, at - 5, "geometry.churn", 2 * KEYS)  # one more than kept: `first` goes
    v = (await snapshot(server.url, sid))["state"]["v"]
    # No stamp left for these paths: the write must beat the floor (at, leader).
    for rid, path in enumerate(["geometry.first", "geometry.fresh"], start=3):
        await reply(lea, state_set(sid, at - 1, {path: 1}), rid)
    assert (await snapshot(server.url, sid))["state"] == {"v": v, "values": {}}
    await reply(lea, state_set(sid, at, {"geometry.fresh": 1}), 9)  # equal stamp, same writer: wins
    assert await values(server.url, sid) == {"geometry.fresh": 1}


@pytest.mark.config(rate_per_second=10_000, burst=10_000)
async def test_churn_only_raises_the_floor_of_the_churners_area(server) -> None:
    lea, sid, _lea_id, pat, pid, at = await leader_and_pat(server.url)
    await reply(lea, state_set(sid, at, {"geometry.gone": None}), 2)  # leader's tombstone, oldest
    await _churn(pat, sid, at + 5, f"participants.{pid}", 2 * KEYS)  # the participant's churn
    await reply(lea, state_set(sid, at - 1, {"geometry.fresh": 1}), 3)
    assert (await values(server.url, sid)).get("geometry.fresh") == 1


async def test_last_writer_wins_by_stamp(server) -> None:
    lea, sid, _lea_id, pat, _pid, at = await leader_and_pat(server.url)
    await reply(lea, state_set(sid, at, {"geometry.x": 1}), 2)
    await reply(lea, state_set(sid, at - 0.001, {"geometry.x": 2}), 3)  # older: silently loses
    assert await values(server.url, sid) == {"geometry.x": 1}
    await reply(lea, state_set(sid, at, {"geometry.x": 3}), 4)  # same `at`, own later message: wins
    assert await values(server.url, sid) == {"geometry.x": 3}
    await reply(lea, state_set(sid, at + 0.001, {"geometry.x": 4}), 5)
    assert await values(server.url, sid) == {"geometry.x": 4}
    states = [m for m in await barrier(pat) if m["type"] == "state"]
    assert [m["set"]["geometry.x"] for m in states] == [1, 3, 4], "a losing update is not broadcast"


async def test_ties_on_at_go_to_the_larger_writer_id(server) -> None:
    lea, sid, lea_id, pat, pid, at = await leader_and_pat(server.url)
    await reply(lea, state_set(sid, at, {"geometry.x": "lea"}), 2)
    await reply(lea, {"type": "handover", "session": sid, "to": pid}, 3)
    await take(pat, "leader")
    await reply(pat, state_set(sid, at, {"geometry.x": "pat"}), 4)
    expected = "pat" if pid > lea_id else "lea"
    assert (await values(server.url, sid))["geometry.x"] == expected
    await reply(pat, {"type": "handover", "session": sid, "to": lea_id}, 5)
    await take(lea, "leader", leader=lea_id)
    await reply(lea, state_set(sid, at, {"geometry.x": "lea again"}), 6)
    assert (await values(server.url, sid))["geometry.x"] == ("lea again" if lea_id > pid else "pat")


async def test_update_is_validated_as_a_whole(server) -> None:
    lea, sid, _lea_id, pat, pid, at = await leader_and_pat(server.url)
    for rid, bad in enumerate([{"bad root": 1}, {"other.x": 1}, {f"participants.{pid}.x": 1}], start=2):
        err = await reply(lea, state_set(sid, at, {"geometry.ok": 1, **bad}), rid)
        assert err["type"] == "error"
    assert (await snapshot(server.url, sid))["state"] == {"v": 0, "values": {}}
    assert not [m for m in await barrier(pat) if m["type"] == "state"]


async def test_accepted_subset_is_broadcast_as_one_state(server) -> None:
    lea, sid, lea_id, pat, _pid, at = await leader_and_pat(server.url)
    obs, _ = await member(server.url, sid, "Obs", "observer")
    await reply(lea, state_set(sid, at, {"geometry.old": 1}), 2)
    await reply(lea, state_set(sid, at - 1, {"geometry.old": 2, "geometry.new": 3, "polarity.p": None}), 3)
    for raw in (lea, pat, obs):
        states = [m for m in await barrier(raw) if m["type"] == "state"]
        assert states == [
            {"type": "state", "session": sid, "v": 1, "at": at, "from": lea_id, "set": {"geometry.old": 1}},
            {
                "type": "state",
                "session": sid,
                "v": 2,
                "at": at - 1,
                "from": lea_id,
                "set": {"geometry.new": 3, "polarity.p": None},
            },
        ]
    assert (await snapshot(server.url, sid))["state"] == {
        "v": 2,
        "values": {"geometry.old": 1, "geometry.new": 3},
    }


async def test_state_set_ack_only_with_rid(server) -> None:
    lea, sid, _ = await session_with(server.url)
    at = await server_now(lea)
    await lea.send(state_set(sid, at, {"geometry.a": 1}))
    assert [m["type"] for m in await barrier(lea)] == ["state"]
    assert (await reply(lea, state_set(sid, at, {"geometry.a": 2}), 5)) == {"type": "ack", "rid": 5}


@pytest.mark.config(socket_send_buffer=32 * 1024, rate_per_second=10_000, burst=10_000)
async def test_slow_receiver_gets_coalesced_state(server) -> None:
    lea, sid, _ = await session_with(server.url)
    slow = await TcpWs.open(server.port, rcvbuf=16 * 1024)
    await slow.data_frame()  # welcome
    await slow.send_json({"type": "join", "session": sid, "name": "Slow", "role": "observer", "rid": 1})
    await take(lea, "presence")
    at = await server_now(lea)
    n, blob = 120, "x" * 10_000  # 1.2 MB of state for a receiver that reads nothing meanwhile
    for i in range(n):
        await lea.send(state_set(sid, at + i * 1e-4, {"geometry.blob": f"{i}{blob}", "geometry.i": i}))
        await take(lea, "state")  # the leader keeps up with its own echoes
    states: list[dict[str, Any]] = []
    async with asyncio.timeout(10):
        while not states or states[-1]["v"] < n:
            f = await slow.data_frame()
            states += [m for m in f.messages() if m["type"] == "state"]
    vs = [m["v"] for m in states]
    assert vs == sorted(vs), "v never decreases"
    coalesced = [m for m in states if m.get("coalesced")]
    assert coalesced, "a congested receiver gets coalesced updates"
    assert len(states) < n
    last = states[-1]
    assert (last["set"]["geometry.i"], last["v"]) == (n - 1, n)
    assert last["at"] == at + (n - 1) * 1e-4
    for m in coalesced:
        assert m["coalesced"] is True and m["session"] == sid
    final: dict[str, Any] = {}
    for m in states:
        final.update(m["set"])
    assert final == await values(server.url, sid)
    drops = metric(
        (await http(server.http, "/metrics")).body.decode(), "collective_sync_coalesced_drops_total"
    )
    assert drops is not None and drops > 0
    slow.close()
