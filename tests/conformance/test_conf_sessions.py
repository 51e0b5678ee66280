"""docs/protocol.md, **Client → server messages** (`create`, `join`, `leave`, `meta`, `handover`)
and **Sessions, presence and leadership**, with a raw WebSocket client.

The server runs with `support.make_config()`: grace period 0.3 s, session lifetime 0.5 s.

The table mapping each doc statement to its test is in tests/conformance/README.md.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from confwire import barrier, healthz, member, reply, snapshot, take, take_if, wait_healthz
from rawws import Raw, session_with

GRACE = 0.3  # support.make_config


def ids(participants: list[dict[str, Any]]) -> list[str]:
    return [p["id"] for p in participants]


async def test_create_joins_the_creator_as_leader(server) -> None:
    raw = await Raw.open(server.url)
    joined = await raw.request({"type": "create", "name": "Lea", "meta": {"hue": 3}}, rid=7)
    assert joined["type"] == "joined"
    me = joined["you"]
    assert joined["role"] == "leader" and joined["leader"] == me
    assert isinstance(joined["token"], str) and joined["token"]
    (info,) = joined["participants"]
    assert (info["id"], info["name"], info["role"], info["meta"]) == (me, "Lea", "leader", {"hue": 3})
    assert abs(info["joinedAt"] - raw.welcome["time"]) < 5
    assert joined["state"] == {"v": 0, "values": {}}
    assert joined["seq"] == 0
    assert joined["settings"]["sessionId"] == joined["session"]


async def test_session_id_can_be_chosen_and_is_then_taken(server) -> None:
    raw = await Raw.open(server.url)
    settings = {"sessionId": "my-room_1", "ceremonyType": "dawn", "playoutDelay": 0.4, "public": True}
    joined = await raw.request({"type": "create", "name": "A", "settings": settings}, rid=1)
    assert joined["session"] == "my-room_1"
    assert joined["settings"] == settings
    other = await Raw.open(server.url)
    err = await other.request({"type": "create", "name": "B", "settings": {"sessionId": "my-room_1"}}, rid=2)
    assert (err["code"], err["rid"]) == ("session_exists", 2)
    after = await snapshot(server.url, "my-room_1")
    assert ids(after["participants"])[:1] == [joined["you"]] and len(after["participants"]) == 2
    assert after["settings"] == settings


@pytest.mark.parametrize(
    ("fields", "ok"),
    [
        ({"name": ""}, False),
        ({"name": "n" * 64}, True),
        ({"name": "n" * 65}, False),
        ({"name": 5}, False),
        ({}, False),
        ({"settings": {"ceremonyType": "c" * 64}}, True),
        ({"settings": {"ceremonyType": "c" * 65}}, False),
        ({"settings": {"playoutDelay": 0}}, True),
        ({"settings": {"playoutDelay": 2}}, True),
        ({"settings": {"playoutDelay": 2.01}}, False),
        ({"settings": {"playoutDelay": -0.01}}, False),
        ({"settings": {"public": "yes"}}, False),
        ({"meta": {"k": "v" * 1000}}, True),
        ({"meta": {"k": "v" * 1100}}, False),
        ({"meta": [1]}, False),
    ],
)
async def test_create_field_limits(server, fields: dict[str, Any], ok: bool) -> None:
    raw = await Raw.open(server.url)
    msg = {"type": "create", "name": "N", **fields}
    if "name" not in fields and not any(k in fields for k in ("settings", "meta")):
        del msg["name"]
    reply = await raw.request(msg, rid=3)
    if ok:
        assert reply["type"] == "joined", reply
    else:
        assert (reply["type"], reply["code"], reply["rid"]) == ("error", "invalid_message", 3)
        assert (await healthz(server.http))["sessions"] == 0


async def test_join_gets_everything_and_others_get_presence_joins(server) -> None:
    lea, sid, lea_id = await session_with(server.url)
    at = lea.welcome["time"]
    await lea.request({"type": "state_set", "session": sid, "at": at, "set": {"geometry.r": 2}}, rid=2)
    await lea.request({"type": "control", "session": sid, "event": "go"}, rid=3)
    pat, joined = await member(server.url, sid, "Pat")
    assert ids(joined["participants"]) == [lea_id, joined["you"]]
    assert joined["role"] == "participant" and joined["leader"] == lea_id
    assert joined["state"]["values"] == {"geometry.r": 2} and joined["state"]["v"] == 1
    assert joined["seq"] == 1
    presence = await take(lea, "presence")
    (info,) = presence["joins"]
    assert presence["session"] == sid
    assert (info["id"], info["name"], info["role"]) == (joined["you"], "Pat", "participant")
    assert "leaves" not in presence and "updates" not in presence
    obs, obs_joined = await member(server.url, sid, "Obs", "observer")
    assert obs_joined["role"] == "observer"
    for raw in (lea, pat):
        (info,) = (await take(raw, "presence"))["joins"]
        assert (info["id"], info["role"]) == (obs_joined["you"], "observer")
    assert not [m for m in await barrier(obs) if m["type"] == "presence"], "the joiner is not told of itself"


@pytest.mark.parametrize(
    ("fields", "ok"),
    [
        ({"role": "leader"}, False),
        ({"role": "observer"}, True),
        ({"lastSeq": -1}, False),
        ({"lastSeq": 0}, True),
        ({"lastSeq": 1.5}, False),
        ({"name": ""}, False),
        ({"meta": {"x": "y" * 1100}}, False),
    ],
)
async def test_join_field_limits(server, fields: dict[str, Any], ok: bool) -> None:
    _lea, sid, _ = await session_with(server.url)
    raw = await Raw.open(server.url)
    reply = await raw.request({"type": "join", "session": sid, "name": "J", **fields}, rid=4)
    if ok:
        assert reply["type"] == "joined", reply
    else:
        assert (reply["code"], reply["rid"], reply.get("session")) == ("invalid_message", 4, sid)
        assert len((await snapshot(server.url, sid))["participants"]) == 2  # leader + probe


async def test_joining_participant_claims_a_vacant_session_and_an_observer_does_not(server) -> None:
    lea, sid, lea_id = await session_with(server.url)
    obs, _ = await member(server.url, sid, "Obs", "observer")
    await lea.request({"type": "leave", "session": sid}, rid=2)
    vacant = await take(obs, "leader")
    assert (vacant["leader"], vacant["reason"], vacant["previous"]) == (None, "vacant", lea_id)
    _obs2, joined_obs2 = await member(server.url, sid, "Obs2", "observer")
    assert joined_obs2["leader"] is None
    assert not [m for m in await barrier(obs) if m["type"] == "leader"], "an observer never leads"
    _pat, joined = await member(server.url, sid, "Pat")
    assert joined["role"] == "leader" and joined["leader"] == joined["you"]
    claimed = await take(obs, "leader")
    assert (claimed["leader"], claimed["reason"]) == (joined["you"], "claimed")
    (info,) = (await take(obs, "presence", session=sid))["joins"]
    assert info["role"] == "leader"


async def test_leave_clears_the_area_and_tells_the_others(server) -> None:
    lea, sid, _lea_id = await session_with(server.url)
    pat, joined = await member(server.url, sid)
    pid = joined["you"]
    at = joined["participants"][1]["joinedAt"]
    area = {f"participants.{pid}.hr": 60, f"participants.{pid}.bio.gsr": 0.5}
    await pat.request({"type": "state_set", "session": sid, "at": at, "set": area}, rid=2)
    left = await pat.request({"type": "leave", "session": sid}, rid=3)
    assert left == {"type": "left", "session": sid, "rid": 3}
    presence = await take(lea, "presence", leaves=[pid])
    assert presence["session"] == sid
    cleared = await take(lea, "state", **{"from": "server"})
    assert cleared["set"] == dict.fromkeys(area)
    assert (await snapshot(server.url, sid))["state"]["values"] == {}
    assert [m["type"] for m in await barrier(pat)] == [], "the leaver gets nothing after `left`"
    err = await pat.request({"type": "leave", "session": sid}, rid=4)
    assert (err["code"], err["session"]) == ("not_in_session", sid)


async def test_meta_update_is_acked_and_shown(server) -> None:
    lea, sid, _lea_id = await session_with(server.url)
    pat, joined = await member(server.url, sid)
    await barrier(lea)
    ack = await reply(pat, {"type": "meta", "session": sid, "meta": {"hr": 61}}, rid=2)
    assert ack == {"type": "ack", "rid": 2}
    (update,) = (await take(lea, "presence", session=sid))["updates"]
    assert (update["id"], update["meta"]) == (joined["you"], {"hr": 61})
    err = await pat.request({"type": "meta", "session": sid, "meta": {"k": "x" * 1030}}, rid=3)
    assert (err["code"], err["rid"], err["session"]) == ("invalid_message", 3, sid)
    assert not [m for m in await barrier(lea) if m["type"] == "presence"]


async def test_drop_shows_disconnected_then_leaves_after_the_grace_period(server) -> None:
    lea, sid, _lea_id = await session_with(server.url)
    pat, joined = await member(server.url, sid)
    pid = joined["you"]
    at = joined["participants"][1]["joinedAt"]
    await pat.request({"type": "state_set", "session": sid, "at": at, "set": {f"participants.{pid}.a": 1}}, 2)
    await barrier(lea)
    await pat.close()
    dropped = time.monotonic()
    (update,) = (await take(lea, "presence", session=sid))["updates"]
    assert (update["id"], update["connected"]) == (pid, False)
    during = await snapshot(server.url, sid)
    assert pid in ids(during["participants"])
    assert during["state"]["values"] == {f"participants.{pid}.a": 1}
    await take(lea, "presence", leaves=[pid], timeout=GRACE + 2)
    assert time.monotonic() - dropped >= GRACE * 0.9
    cleared = await take(lea, "state", **{"from": "server"})
    assert cleared["set"] == {f"participants.{pid}.a": None}


@pytest.mark.config(grace_period=30)  # resumed well within it, however busy the machine
async def test_resume_reattaches_the_same_participant_and_replays_controls(server) -> None:
    lea = await Raw.open(server.url)
    created = await lea.request({"type": "create", "name": "Lea"}, rid=1)
    sid, lea_id = created["session"], created["you"]
    pat, joined = await member(server.url, sid)
    pid, token = joined["you"], joined["token"]
    at = joined["participants"][1]["joinedAt"]
    await pat.request({"type": "state_set", "session": sid, "at": at, "set": {f"participants.{pid}.a": 1}}, 2)
    for i in range(3):
        await lea.request({"type": "control", "session": sid, "event": f"e{i}"}, rid=10 + i)
    await pat.close()
    await take(lea, "presence", updates=[{**joined["participants"][1], "connected": False}])
    for i in range(3, 5):
        await lea.request({"type": "control", "session": sid, "event": f"e{i}"}, rid=10 + i)
    back = await Raw.open(server.url)
    await back.send(
        {"type": "join", "session": sid, "name": "ignored", "resume": token, "lastSeq": 2, "rid": 5}
    )
    rejoined = await back.recv()
    assert (rejoined["type"], rejoined["you"], rejoined["role"], rejoined["rid"]) == (
        "joined",
        pid,
        "participant",
        5,
    )
    assert rejoined["state"]["values"] == {f"participants.{pid}.a": 1}
    replay = [await back.recv() for _ in range(3)]
    assert [(m["type"], m["seq"], m["event"]) for m in replay] == [
        ("control", 3, "e2"),
        ("control", 4, "e3"),
        ("control", 5, "e4"),
    ]
    (update,) = (await take(lea, "presence", session=sid))["updates"]
    assert update["id"] == pid and "connected" not in update
    # The leader resumes as leader too.
    await lea.close()
    await take(back, "presence", session=sid)
    lea2 = await Raw.open(server.url)
    lea_joined = await lea2.request(
        {"type": "join", "session": sid, "name": "x", "resume": created["token"]}, 6
    )
    assert (lea_joined["you"], lea_joined["role"], lea_joined["leader"]) == (lea_id, "leader", lea_id)


async def test_resume_after_grace_or_with_unknown_token_fails(server) -> None:
    lea, sid, _ = await session_with(server.url)
    pat, joined = await member(server.url, sid)
    await pat.close()
    await take(lea, "presence", leaves=[joined["you"]], timeout=GRACE + 2)
    back = await Raw.open(server.url)
    for rid, token in ((1, joined["token"]), (2, "no-such-token")):
        err = await back.request({"type": "join", "session": sid, "name": "x", "resume": token}, rid=rid)
        assert (err["code"], err["rid"], err["session"]) == ("resume_failed", rid, sid)
    assert ids((await snapshot(server.url, sid))["participants"])[:1] == [ids(joined["participants"])[0]]


async def test_failover_on_leave_picks_the_longest_present_connected_participant(server) -> None:
    lea, sid, lea_id = await session_with(server.url)
    _obs, _ = await member(server.url, sid, "Obs", "observer")  # present longest, but never leads
    first, j_first = await member(server.url, sid, "First")
    _second, j_second = await member(server.url, sid, "Second")
    third, _j_third = await member(server.url, sid, "Third")
    await first.close()  # dropped (in grace): not connected, so not a candidate
    await take(lea, "presence", session=sid, updates=[{**j_first["participants"][2], "connected": False}])
    await lea.request({"type": "leave", "session": sid}, rid=2)
    leader = await take(third, "leader")
    assert (leader["leader"], leader["reason"], leader["previous"]) == (j_second["you"], "failover", lea_id)
    update = await take(third, "presence", updates=[{**j_second["participants"][3], "role": "leader"}])
    assert update["session"] == sid


async def test_failover_when_the_leaders_grace_period_ends(server) -> None:
    lea, sid, lea_id = await session_with(server.url)
    pat, joined = await member(server.url, sid)
    await lea.close()
    (dropped,) = (await take(pat, "presence", session=sid))["updates"]
    assert (dropped["id"], dropped["connected"], dropped["role"]) == (lea_id, False, "leader")
    assert (await snapshot(server.url, sid))["leader"] == lea_id, "no failover during the grace period"
    leader = await take(pat, "leader", timeout=GRACE + 2)
    assert (leader["leader"], leader["reason"], leader["previous"]) == (joined["you"], "failover", lea_id)


async def test_no_candidate_means_vacant(server) -> None:
    lea, sid, lea_id = await session_with(server.url)
    obs, _ = await member(server.url, sid, "Obs", "observer")
    await lea.request({"type": "leave", "session": sid}, rid=2)
    leader = await take(obs, "leader")
    assert leader == {
        "type": "leader",
        "session": sid,
        "leader": None,
        "reason": "vacant",
        "previous": lea_id,
    }


async def test_handover_moves_leadership(server) -> None:
    lea, sid, lea_id = await session_with(server.url)
    pat, joined = await member(server.url, sid)
    pid = joined["you"]
    ack = await reply(lea, {"type": "handover", "session": sid, "to": pid}, rid=2)
    assert ack == {"type": "ack", "rid": 2}
    for raw in (lea, pat):
        leader = await take(raw, "leader")
        assert leader == {
            "type": "leader",
            "session": sid,
            "leader": pid,
            "reason": "handover",
            "previous": lea_id,
        }
        updates = (await take_if(raw, lambda m: m["type"] == "presence" and "updates" in m))["updates"]
        assert {(u["id"], u["role"]) for u in updates} == {(lea_id, "participant"), (pid, "leader")}
    ack = await pat.request({"type": "control", "session": sid, "event": "e"}, rid=3)
    assert ack["seq"] == 1


async def test_handover_refusals(server) -> None:
    lea, sid, lea_id = await session_with(server.url)
    pat, joined = await member(server.url, sid)
    _obs, obs_joined = await member(server.url, sid, "Obs", "observer")
    gone, gone_joined = await member(server.url, sid, "Gone")
    await gone.close()
    await take(lea, "presence", updates=[{**gone_joined["participants"][3], "connected": False}])
    err = await pat.request({"type": "handover", "session": sid, "to": joined["you"]}, rid=2)
    assert (err["code"], err["rid"], err["session"]) == ("not_leader", 2, sid)
    for rid, to in ((3, obs_joined["you"]), (4, gone_joined["you"]), (5, "p00000000"), (6, lea_id)):
        err = await lea.request({"type": "handover", "session": sid, "to": to}, rid=rid)
        assert (err["code"], err["rid"]) == ("invalid_target", rid), to
    assert (await snapshot(server.url, sid))["leader"] == lea_id


async def test_session_ends_after_its_last_participant_is_gone(server) -> None:
    lea, sid, _ = await session_with(server.url)
    await lea.request({"type": "leave", "session": sid}, rid=2)
    gone_at = time.monotonic()
    await wait_healthz(server.http, timeout=3, sessions=0)
    assert time.monotonic() - gone_at >= 0.5 * 0.9  # make_config: session_ttl 0.5
    err = await lea.request({"type": "join", "session": sid, "name": "x"}, rid=3)
    assert (err["code"], err["rid"], err["session"]) == ("session_ended", 3, sid)


async def test_up_to_max_sessions_per_connection(server) -> None:
    raw = await Raw.open(server.url)
    sids = []
    for i in range(8):
        joined = await raw.request({"type": "create", "name": f"n{i}"}, rid=i)
        assert joined["type"] == "joined"
        sids.append(joined["session"])
    err = await raw.request({"type": "create", "name": "ninth"}, rid=8)
    assert err["code"] == "too_many_sessions"
    _other, sid9, _ = await session_with(server.url)
    err = await raw.request({"type": "join", "session": sid9, "name": "ninth"}, rid=9)
    assert (err["code"], err["session"]) == ("too_many_sessions", sid9)
    for i, sid in enumerate(sids):  # every session-scoped message names its session
        ack = await raw.request({"type": "control", "session": sid, "event": "e"}, rid=20 + i)
        assert ack["seq"] == 1
    controls = [m for m in await barrier(raw) if m["type"] == "control"]
    assert [m["session"] for m in controls] == sids[len(sids) - len(controls) :]
    assert (await healthz(server.http))["sessions"] == 9


@pytest.mark.config(max_sessions=2)
async def test_server_session_limit(server) -> None:
    for _ in range(2):
        await session_with(server.url)
    raw = await Raw.open(server.url)
    err = await raw.request({"type": "create", "name": "third"}, rid=1)
    assert err["code"] == "too_many_sessions"
    assert (await healthz(server.http))["sessions"] == 2


async def test_membership_errors(server) -> None:
    lea, sid, _ = await session_with(server.url)
    err = await lea.request({"type": "join", "session": "nowhere", "name": "x"}, rid=1)
    assert (err["code"], err["rid"], err["session"]) == ("session_not_found", 1, "nowhere")
    err = await lea.request({"type": "join", "session": sid, "name": "x"}, rid=2)
    assert (err["code"], err["session"]) == ("already_joined", sid)
    outsider = await Raw.open(server.url)
    for rid, msg in enumerate(
        [
            {"type": "leave", "session": sid},
            {"type": "meta", "session": sid, "meta": {}},
            {"type": "handover", "session": sid, "to": "p00000000"},
            {"type": "control", "session": sid, "event": "e"},
            {"type": "state_set", "session": sid, "at": lea.welcome["time"], "set": {"geometry.a": 1}},
        ],
        start=10,
    ):
        err = await outsider.request(msg, rid=rid)
        assert (err["code"], err["rid"], err["session"]) == ("not_in_session", rid, sid), msg
    after = await snapshot(server.url, sid)
    assert (after["seq"], after["state"]["v"], len(after["participants"])) == (0, 0, 2)


async def test_session_messages_stay_in_the_session(server) -> None:
    lea, sid, _ = await session_with(server.url)
    outsider, other_sid, _ = await session_with(server.url)
    pat, joined = await member(server.url, sid)
    at = joined["participants"][1]["joinedAt"]
    await lea.request({"type": "control", "session": sid, "event": "e"}, rid=2)
    await lea.request({"type": "state_set", "session": sid, "at": at, "set": {"geometry.a": 1}}, rid=3)
    await lea.request({"type": "handover", "session": sid, "to": joined["you"]}, rid=4)
    await pat.request({"type": "leave", "session": sid}, rid=5)
    await take(lea, "leader", reason="failover")
    assert [m for m in await barrier(outsider) if m.get("session") == sid] == []
    assert all(m.get("session") in (None, other_sid) for m in outsider.pending)


async def test_joined_carries_the_servers_epoch(server) -> None:
    """`epoch` (Durability): a string, the same for every join on one run of the server."""
    lea = await Raw.open(server.url)
    created = await lea.request({"type": "create", "name": "Lea"}, rid=1)
    _pat, joined = await member(server.url, created["session"])
    assert isinstance(created["epoch"], str) and created["epoch"]
    assert joined["epoch"] == created["epoch"]


async def test_a_resume_from_a_second_connection_tells_the_first(server) -> None:
    """`left` with `reason: "replaced"`, unsolicited (no `rid`), goes to the connection the
    participant moved away from; that connection is no longer in the session."""
    _lea, sid, _ = await session_with(server.url)
    first, joined = await member(server.url, sid)
    second = await Raw.open(server.url)
    moved = await second.request(
        {"type": "join", "session": sid, "name": "x", "resume": joined["token"]}, rid=2
    )
    assert (moved["type"], moved["you"], moved["token"]) == ("joined", joined["you"], joined["token"])
    left = await take(first, "left", session=sid)
    assert left.get("reason") == "replaced" and "rid" not in left
    err = await reply(first, {"type": "meta", "session": sid, "meta": {"a": 1}}, rid=3)
    assert (err["type"], err["code"]) == ("error", "not_in_session")
    assert ids((await snapshot(server.url, sid))["participants"]).count(joined["you"]) == 1
