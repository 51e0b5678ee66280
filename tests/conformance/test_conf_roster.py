"""docs/protocol.md, "Presence in large sessions": beyond the roster limit a joiner is only
counted, the head count goes out in `presence` at most every presence interval, and `roster`
pages list everyone. With a raw client, and a roster limit of 2 so that three people make a crowd."""

from __future__ import annotations

import asyncio
import json

import pytest
from confwire import server_now
from rawws import Raw, session_with

CROWD = pytest.mark.config(roster_limit=2, presence_interval=0.05)


async def join(url: str, sid: str, name: str, role: str = "participant") -> tuple[Raw, dict]:
    raw = await Raw.open(url)
    joined = await raw.request({"type": "join", "session": sid, "name": name, "role": role}, rid=1)
    assert joined["type"] == "joined", joined
    return raw, joined


async def test_a_small_session_lists_everyone_and_sends_no_count(server) -> None:
    lead, sid, lead_id = await session_with(server.url)
    _, ben = await join(server.url, sid, "Ben")
    assert "count" not in ben
    assert {p["id"] for p in ben["participants"]} == {lead_id, ben["you"]}
    got = await lead.expect("presence")
    assert [p["id"] for p in got["joins"]] == [ben["you"]]
    assert "count" not in got


@CROWD
async def test_beyond_the_roster_a_joiner_is_counted_not_announced(server) -> None:
    lead, sid, lead_id = await session_with(server.url)
    _, ben = await join(server.url, sid, "Ben")
    assert [p["id"] for p in (await lead.expect("presence"))["joins"]] == [ben["you"]]
    _, cleo = await join(server.url, sid, "Cleo", "observer")
    # The joiner sees the roster and itself, and the count that says who is not listed.
    assert [p["id"] for p in cleo["participants"]] == [lead_id, ben["you"], cleo["you"]]
    assert cleo["count"] == {"total": 3, "connected": 3, "observers": 1, "listed": 2}
    # The others get no join for it, only the head count.
    got = await lead.expect("presence")
    assert got == {
        "type": "presence",
        "session": sid,
        "count": {"total": 3, "connected": 3, "observers": 1, "listed": 2},
    }


@CROWD
async def test_roster_pages_list_everyone_in_join_order(server) -> None:
    lead, sid, lead_id = await session_with(server.url)
    ids = [lead_id]
    for name in ("Ben", "Cleo", "Dan"):
        ids.append((await join(server.url, sid, name, "observer"))[1]["you"])
    seen, after, pages = [], None, 0
    while True:
        ask = {"type": "roster", "session": sid, "limit": 3} | ({"after": after} if after is not None else {})
        page = await lead.request(ask, rid=10 + pages)
        assert page["type"] == "roster", page
        assert page["count"]["total"] == 4
        seen += [p["id"] for p in page["participants"]]
        pages += 1
        after = page.get("next")
        if after is None:
            break
    assert (seen, pages) == (ids, 2)


@CROWD
async def test_when_a_listed_participant_leaves_the_longest_present_of_the_crowd_is_listed(server) -> None:
    lead, sid, _ = await session_with(server.url)
    ben_raw, ben = await join(server.url, sid, "Ben", "observer")
    _, cleo = await join(server.url, sid, "Cleo", "observer")
    _, dan = await join(server.url, sid, "Dan", "observer")
    await ben_raw.request({"type": "leave", "session": sid}, rid=2)
    leaves = await lead.expect("presence", leaves=[ben["you"]])
    assert "joins" not in leaves
    joins = await lead.expect("presence")
    while "joins" not in joins:  # head counts may come between
        joins = await lead.expect("presence")
    assert [p["id"] for p in joins["joins"]] == [cleo["you"]]
    assert dan["you"] != cleo["you"]


@CROWD
async def test_a_crowd_member_given_the_lead_is_listed_for_everyone(server) -> None:
    lead, sid, _ = await session_with(server.url)
    await join(server.url, sid, "Ben", "observer")
    _, cleo = await join(server.url, sid, "Cleo")
    await lead.send({"type": "handover", "session": sid, "to": cleo["you"], "rid": 5})
    got = await lead.expect("leader")
    assert got["leader"] == cleo["you"]
    shown = await lead.expect("presence")
    while "joins" not in shown:
        shown = await lead.expect("presence")
    assert [(p["id"], p["role"]) for p in shown["joins"]] == [(cleo["you"], "leader")]


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"limit": 0}, "invalid_message"),
        ({"limit": 501}, "invalid_message"),
        ({"after": -1}, "invalid_message"),
        ({"after": "p1"}, "invalid_message"),
        ({"session": "nope"}, "not_in_session"),
    ],
)
async def test_bad_roster_requests_are_refused(server, fields: dict, code: str) -> None:
    lead, sid, _ = await session_with(server.url)
    err = await lead.request({"type": "roster", "session": sid, **fields}, rid=3)
    assert (err["type"], err["code"], err["rid"]) == ("error", code, 3)
    ok = await lead.request({"type": "roster", "session": sid}, rid=4)
    assert [p["name"] for p in ok["participants"]] == ["Lea"]
    assert "next" not in ok


async def test_a_non_member_cannot_read_the_roster(server) -> None:
    _, sid, _ = await session_with(server.url)
    stranger = await Raw.open(server.url)
    err = await stranger.request({"type": "roster", "session": sid}, rid=1)
    assert err["code"] == "not_in_session"


# The tick (which would send the count alone) does not run during this test, so a count can only
# reach the members with a state update.
@pytest.mark.config(roster_limit=2, presence_interval=0.05, tick_interval=60)
async def test_while_state_streams_the_head_count_comes_in_the_frame_of_a_state(server) -> None:
    lead, sid, _ = await session_with(server.url)
    ben, _ = await join(server.url, sid, "Ben")
    await lead.expect("presence")
    _, cleo = await join(server.url, sid, "Cleo", "observer")  # the crowd: the count is owed
    assert cleo["count"]["total"] == 3
    at = await server_now(lead)
    ack = await lead.request({"type": "state_set", "session": sid, "at": at, "set": {"geometry.R": 2}}, rid=5)
    assert ack["type"] == "ack", ack
    assert not ben.pending
    frame = json.loads(await asyncio.wait_for(ben.ws.recv(), 5))
    assert isinstance(frame, list), frame  # one frame, two messages
    assert [m["type"] for m in frame] == ["presence", "state"]
    assert frame[0]["count"] == {"total": 3, "connected": 3, "observers": 1, "listed": 2}
    assert frame[1]["set"] == {"geometry.R": 2}
