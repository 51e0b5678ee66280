"""Sessions, presence diffs, leadership and the HTTP API, through the real server."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

import pytest

from collective_sync.client import ServerError
from collective_sync.protocol.messages import ControlOut, Leader, Presence


async def http_get(url: str) -> tuple[int, dict | str]:
    def fetch() -> tuple[int, bytes, str]:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.status, r.read(), r.headers.get("Content-Type", "")
        except urllib.error.HTTPError as e:
            return e.code, e.read(), e.headers.get("Content-Type", "")

    status, body, ctype = await asyncio.to_thread(fetch)
    return status, json.loads(body) if "json" in ctype else body.decode()


async def test_creator_leads_and_public_sessions_are_listed(server, connect) -> None:
    a, b = await connect(), await connect()
    public = await a.create("Ana", public=True, ceremony_type="dawn")
    await b.create("Ben")  # private
    assert public.is_leader and public.role == "leader"
    status, body = await http_get(f"{server.http}/api/sessions")
    assert status == 200
    assert body == {
        "sessions": [
            {
                "id": public.id,
                "participants": 1,
                "leader": {"id": public.me, "name": "Ana"},
                "createdAt": body["sessions"][0]["createdAt"],
                "ceremonyType": "dawn",
            }
        ]
    }


async def test_http_endpoints(server, connect) -> None:
    status, body = await http_get(f"{server.http}/healthz")
    assert (status, body["status"]) == (200, "ok")
    status, body = await http_get(f"{server.http}/api/time?t0=12.5")
    assert status == 200 and body["t0"] == 12.5 and body["t1"] <= body["t2"]
    status, body = await http_get(f"{server.http}/api/time?t0=nan")
    assert status == 400
    status, body = await http_get(f"{server.http}/nope")
    assert status == 404 and body["error"] == "not_found"
    c = await connect()
    s = await c.create("Ana")
    await s.set({"geometry.R": 1.0}, ack=True)
    status, text = await http_get(f"{server.http}/metrics")
    assert status == 200
    assert "collective_sync_connections 1.0" in text
    assert 'collective_sync_messages_in_total{type="state_set"} 1.0' in text
    assert 'collective_sync_messages_in_total{type="create"} 1.0' in text


async def test_joiner_gets_full_list_and_others_get_diffs(connect) -> None:
    a, b, c = await connect(), await connect(), await connect()
    sa = await a.create("Ana")
    sb = await b.join(sa.id, "Ben", meta={"balance": 0.2})
    sc = await c.join(sa.id, "Cy", role="observer")
    assert {p.name for p in sc.participants.values()} == {"Ana", "Ben", "Cy"}
    assert sc.participants[sb.me].meta == {"balance": 0.2}
    assert sc.participants[sc.me].role == "observer"
    joined = await sa.next_event(Presence, 2)
    assert [p.name for p in joined.joins] == ["Ben"]
    await sa.wait_for(lambda s: sc.me in s.participants, 2)
    # Meta update reaches everyone as an update diff.
    await sb.update_meta({"balance": -0.7})
    await sc.wait_for(lambda s: s.participants[sb.me].meta == {"balance": -0.7}, 2)
    # Leave: a leaves-diff to the others, and the leaver's area is cleared.
    await sb.set({f"participants.{sb.me}.hr": 61}, ack=True)
    await sc.wait_for(lambda s: f"participants.{sb.me}.hr" in s.values, 2)
    await sb.leave()
    await sc.wait_for(lambda s: sb.me not in s.participants and not s.values, 2)
    await sa.wait_for(lambda s: sb.me not in s.participants, 2)


async def test_join_missing_session_and_session_expiry(server, connect) -> None:
    a, b = await connect(), await connect()
    with pytest.raises(ServerError) as err:
        await b.join("nosuchsession", "Ben")
    assert err.value.code == "session_not_found"
    s = await a.create("Ana", session_id="short-lived")
    with pytest.raises(ServerError) as err:
        await b.create("Ben", session_id="short-lived")
    assert err.value.code == "session_exists"
    node = server.server.node
    ended = asyncio.get_running_loop().create_future()
    node.on_session_end = ended.set_result
    await s.leave()
    assert "short-lived" in node.sessions  # an empty session lives on for its ttl
    assert await asyncio.wait_for(ended, 5) == "short-lived"  # ttl 0.5 s in tests
    with pytest.raises(ServerError) as err:
        await b.join("short-lived", "Ben")
    assert err.value.code == "session_ended"  # not "not found": a client holding a link stops retrying
    assert "ended" in err.value.message
    again = await b.create("Ben", session_id="short-lived")  # an ended id may be used again
    assert again.is_leader


async def test_handover(connect) -> None:
    a, b = await connect(), await connect()
    sa = await a.create("Ana")
    sb = await b.join(sa.id, "Ben")
    await sa.handover(sb.me)
    ev = await sb.next_event(Leader, 2)
    assert (ev.leader, ev.reason, ev.previous) == (sb.me, "handover", sa.me)
    await sa.wait_for(lambda s: s.participants[sa.me].role == "participant" and s.leader == sb.me, 2)
    with pytest.raises(ServerError) as err:
        await sa.control("polarity_flip", {})
    assert err.value.code == "not_leader"
    assert await sb.control("polarity_flip", {}) == 1


async def test_failover_promotes_longest_present_after_grace(server, connect) -> None:
    leader, first, obs, second = await connect(), await connect(), await connect(), await connect()
    sl = await leader.create("Lea")
    s1 = await first.join(sl.id, "First")
    await obs.join(sl.id, "Obs", role="observer")  # observers never lead, even when older
    s2 = await second.join(sl.id, "Second")
    await leader.close()
    # Shown as disconnected first, still leader during the grace period.
    await s2.wait_for(lambda s: not s.participants[sl.me].connected, 2)
    assert s2.leader == sl.me
    ev = await s2.next_event(Leader, 3)
    assert (ev.leader, ev.reason, ev.previous) == (s1.me, "failover", sl.me)
    await s1.wait_for(lambda s: s.is_leader and sl.me not in s.participants, 2)
    assert await s1.control("go", {}) == 1


async def test_resume_within_grace_keeps_identity_leadership_and_replays(server, connect) -> None:
    # Long enough that a busy machine cannot turn "within the grace period" into "after it".
    server.config.session.grace_period = 30.0
    leader, follower = await connect(), await connect()
    sl = await leader.create("Lea")
    sf = await follower.join(sl.id, "Fen")
    await sl.control("one", {"n": 1})
    await sf.wait_for(lambda s: s.seq == 1, 2)
    token, last = sf.token, sf.seq
    await follower.close()
    await sl.wait_for(lambda s: not s.participants[sf.me].connected, 2)
    await sl.control("two", {"n": 2})
    await sl.control("three", {"n": 3})
    again = await connect()
    sf2 = await again.join(sl.id, "Fen", resume=token, last_seq=last)
    assert sf2.me == sf.me
    replayed = [await sf2.next_event(ControlOut, 2) for _ in range(2)]
    assert [(c.seq, c.event) for c in replayed] == [(2, "two"), (3, "three")]
    await sl.wait_for(lambda s: s.participants[sf.me].connected, 2)
    # The leader, too, keeps leadership when it comes back in time.
    ltoken = sl.token
    await leader.close()
    await sf2.wait_for(lambda s: not s.participants[sl.me].connected, 2)
    back = await connect()
    sl2 = await back.join(sl.id, "Lea", resume=ltoken)
    assert sl2.me == sl.me and sl2.is_leader
    marker = await sl2.control("still-leading", {})
    await sf2.wait_for(lambda s: s.seq == marker and s.participants[sl.me].connected, 2)
    # Re-attached on the server: no grace deadline is left that could fail it over.
    assert server.server.node.sessions[sl.id].participants[sl.me].dropped_at is None


async def test_resume_with_bad_token_fails(connect) -> None:
    a, b = await connect(), await connect()
    s = await a.create("Ana")
    with pytest.raises(ServerError) as err:
        await b.join(s.id, "Ben", resume="not-a-token")
    assert err.value.code == "resume_failed"
    assert list(s.participants) == [s.me]


async def test_browser_sdk_modules_are_served(server) -> None:
    status, body = await http_get(f"{server.http}/sdk/clock.js")
    assert status == 200
    assert "export class DisciplinedClock" in body
    for bad in ("/sdk/../server/node.py", "/sdk/%2e%2e/cli.py", "/sdk/", "/sdk/missing.js"):
        status, _ = await http_get(f"{server.http}{bad}")
        assert status == 404, bad
