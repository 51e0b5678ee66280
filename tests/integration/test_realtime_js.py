"""The real `@supabase/realtime-js` (pinned, in Node, `ws` as its transport) against a real
server: the Realtime-compatible endpoint as the app's existing client uses it, and native
clients in the same sessions (docs/supabase.md)."""

from __future__ import annotations

from typing import Any

import pytest
from rtjs import POLARITY, RealtimeJs, on, polarity, rt_url

from collective_sync.client import Client
from collective_sync.protocol.messages import ControlOut, Presence, SignalOut, StateOut

pytestmark = pytest.mark.timeout(90)


async def clients(js: RealtimeJs, server: Any, *ids: str, **options: Any) -> None:
    for id in ids:
        await js.do("client", id=id, url=rt_url(server), apikey="anon-key", **options)


async def test_join_and_presence_sync_join_and_leave_events(server, js: RealtimeJs) -> None:
    await clients(js, server, "a", "b")
    topic = "collective-session-presence1"
    await js.subscribed("a", topic)
    assert await js.do("track", id="a", payload={"user_id": "ua", "display_name": "Ana"}) == "ok"
    synced = await js.wait(lambda e: e.get("id") == "a" and e.get("ev") == "sync" and "ua" in e["state"])
    (ana,) = synced["state"]["ua"]
    assert (ana["display_name"], ana["role"]) == ("Ana", "facilitator")  # the first to join leads
    await js.subscribed("b", topic)
    ben = {"user_id": "ub", "display_name": "Ben", "biofeedback": {"hr": 61}}
    assert await js.do("track", id="b", payload=ben) == "ok"
    joined = await js.wait(on("a", "join", key="ub"))
    assert joined["presences"][0]["biofeedback"] == {"hr": 61}
    assert joined["presences"][0]["role"] == "participant"
    both = await js.wait(lambda e: on("b", "sync")(e) and {"ua", "ub"} <= e["state"].keys())
    assert both["state"]["ua"][0]["participant_id"] == ana["participant_id"]

    mark = len(js.events)
    assert await js.do("leave", id="b") == "ok"
    left = await js.wait(on("a", "leave", key="ub"), after=mark)
    assert left["presences"][0]["user_id"] == "ub"  # the app reads user_id from leftPresences
    # The session itself saw the participant go (not only the channel).
    session = server.server.node.sessions["presence1"]
    assert [p.meta.get("user_id") for p in session.participants.values()] == ["ua"]


async def test_untracked_subscribers_are_not_present_and_untrack_leaves(server, js: RealtimeJs) -> None:
    await clients(js, server, "a", "b")
    topic = "collective-session-untrack1"
    await js.subscribed("a", topic)
    await js.do("track", id="a", payload={"user_id": "ua"})
    await js.subscribed("b", topic)  # subscribed, never tracked: a participant, but not present
    await js.do("track", id="b", payload={"user_id": "ub"})
    await js.wait(on("a", "join", key="ub"))
    mark = len(js.events)
    assert await js.do("untrack", id="b") == "ok"
    await js.wait(on("a", "leave", key="ub"), after=mark)
    assert list((await js.do("presence", id="a")).keys()) == ["ua"]


async def test_broadcast_self_and_ack(server, js: RealtimeJs) -> None:
    await clients(js, server, "lead", "quiet")
    topic = "collective-session-selfack"
    await js.subscribed("lead", topic, broadcast={"self": True, "ack": True})
    await js.subscribed("quiet", topic, broadcast={"self": False, "ack": True})
    assert await js.do("send", id="lead", event="cue", payload={"n": 1}) == "ok"  # acked: accepted
    own = await js.wait(on("lead", "broadcast", event="cue"))  # self: true hears itself
    assert (own["payload"]["n"], own["payload"]["seq"]) == (1, 1)
    assert (await js.wait(on("quiet", "broadcast", event="cue")))["payload"]["n"] == 1
    # self: false: the sender's own state_update is not echoed, the others get it.
    assert await js.do("send", id="quiet", event="state_update", payload={"polarityBalance": 0.3}) == "ok"
    got = await js.wait(on("lead", "broadcast", event="state_update"))
    assert got["payload"]["polarityBalance"] == 0.3
    assert await js.do("send", id="lead", event="cue", payload={"n": 2}) == "ok"
    await js.wait(lambda e: on("quiet", "broadcast", event="cue")(e) and e["payload"]["n"] == 2)
    assert js.seen(on("quiet", "broadcast", event="state_update")) == []


async def test_heartbeats_are_answered(server, js: RealtimeJs) -> None:
    await clients(js, server, "a", heartbeatIntervalMs=100)
    await js.subscribed("a", "collective-session-beat1")
    for _ in range(3):  # three answered heartbeats in a row
        mark = len(js.events)
        await js.wait(on("a", "heartbeat", status="ok"), after=mark)
    assert js.seen(on("a", "heartbeat", status="timeout")) == []


async def test_a_non_leader_polarity_sync_is_refused(server, js: RealtimeJs) -> None:
    await clients(js, server, "lead", "other")
    topic = "collective-session-refuse1"
    await js.subscribed("lead", topic, broadcast={"ack": True})
    await js.subscribed("other", topic, broadcast={"ack": True})
    native = await Client.connect(server.url, discipline=False)
    try:
        watcher = await native.join("refuse1", "Nat")
        assert await js.do("send", id="other", event="polarity_sync", payload=polarity(0.9)) == "error"
        bad = {**polarity(0.1), "lightChannel": {"enabled": True}}  # the leader, but invalid
        assert await js.do("send", id="lead", event="polarity_sync", payload=bad) == "error"
        assert await js.do("send", id="lead", event="polarity_sync", payload=polarity(-0.5)) == "ok"
        first = await watcher.next_event(ControlOut)
        assert (first.seq, first.payload["polarityBalance"]) == (1, -0.5)  # nothing refused got a seq
        heard = await js.wait(on("other", "broadcast", event="polarity_sync"))
        assert heard["payload"]["polarityBalance"] == -0.5
        assert "timestamp" in heard["payload"]
    finally:
        await native.close()


async def test_a_signal_reaches_only_its_target(server, js: RealtimeJs) -> None:
    await clients(js, server, "a", "b", "c")
    topic = "collective-session-signal1"
    for id in ("a", "b", "c"):
        await js.subscribed(id, topic, broadcast={"ack": True})
        await js.do("track", id=id, payload={"user_id": f"u{id}"})
    native = await Client.connect(server.url, discipline=False)
    try:
        nat = await native.join("signal1", "Nat")
        offer = {"type": "offer", "sdp": "v=0"}
        to_b = {"from": "ua", "to": "ub", "signal": offer}
        assert await js.do("send", id="a", event="signal", payload=to_b) == "ok"
        got = await js.wait(on("b", "broadcast", event="signal"))
        assert got["payload"] == {"from": "ua", "to": "ub", "signal": offer}
        spoofed = {"from": "uc", "to": "ub", "signal": {}}
        assert await js.do("send", id="a", event="signal", payload=spoofed) == "error"
        assert await js.do("send", id="a", event="signal", payload={"to": "nobody", "signal": {}}) == "error"
        # To the native participant by its id, and back to a Realtime user by its user id.
        assert await js.do("send", id="a", event="signal", payload={"to": nat.me, "signal": 1}) == "ok"
        arrived = await nat.next_event(SignalOut)
        assert (arrived.signal, arrived.to) == (1, nat.me)
        await nat.signal("uc", {"candidate": "x"})
        back = await js.wait(on("c", "broadcast", event="signal"))
        assert back["payload"] == {"from": nat.me, "to": "uc", "signal": {"candidate": "x"}}
        # Only the targets got anything: c's first signal is the native one, a heard none.
        assert len(js.seen(on("c", "broadcast", event="signal"))) == 1
        assert js.seen(on("a", "broadcast", event="signal")) == []
        assert len(js.seen(on("b", "broadcast", event="signal"))) == 1
    finally:
        await native.close()


async def test_native_and_realtime_clients_see_the_same_controls_in_the_same_order(
    server, js: RealtimeJs
) -> None:
    await clients(js, server, "lead", "follow")
    topic = "collective-session-order1"
    await js.subscribed("lead", topic, broadcast={"ack": True})
    await js.subscribed("follow", topic)
    native = await Client.connect(server.url, discipline=False)
    try:
        nat = await native.join("order1", "Nat")
        for i in range(20):  # not awaited one by one: pipelined as the app would send them
            event = "polarity_sync" if i % 2 == 0 else "cue"
            payload = polarity(i / 20) if event == "polarity_sync" else {"i": i}
            await js.do("send", id="lead", event=event, payload=payload)
        await nat.wait_for(lambda s: s.seq >= 20)
        native_order = [(e.seq, e.event) for e in nat._events if isinstance(e, ControlOut)]
        await js.wait(lambda e: on("follow", "broadcast")(e) and e["payload"].get("seq") == 20)
        rt_order = [(e["payload"]["seq"], e["event"]) for e in js.seen(on("follow", "broadcast"))]
        sent = [(i + 1, "polarity_sync" if i % 2 == 0 else "cue") for i in range(20)]
        assert native_order == rt_order == sent
        # And the other way: a state write from Realtime lands in the sender's own area.
        update = {"polarityBalance": 0.7, "hr": {"bpm": 58}}
        await js.do("send", id="follow", event="state_update", payload=update)
        state = await nat.next_event(StateOut)
        follower = next(p for p in nat.participants.values() if p.id != nat.me and p.role != "leader")
        area = f"participants.{follower.id}"
        assert state.set == {f"{area}.polarityBalance": 0.7, f"{area}.hr": {"bpm": 58}}
    finally:
        await native.close()


async def test_a_native_leader_steers_realtime_followers(server, js: RealtimeJs) -> None:
    native = await Client.connect(server.url, discipline=False)
    try:
        lead = await native.create("Lea", session_id="native1")
        await clients(js, server, "f")
        await js.subscribed("f", "collective-session-native1")
        sync = await js.wait(lambda e: on("f", "sync")(e) and bool(e["state"]))
        (lea,) = [m for metas in sync["state"].values() for m in metas]
        assert (lea["display_name"], lea["role"], lea["user_id"]) == ("Lea", "facilitator", lead.me)
        at = native.network_time() + 0.5
        await lead.polarity_sync(POLARITY, at=at)
        got = await js.wait(on("f", "broadcast", event="polarity_sync"))
        assert got["payload"]["timestamp"] == pytest.approx(at * 1000.0, abs=0.01)  # ms of network time
        assert got["payload"]["polarityBalance"] == POLARITY["polarityBalance"]
        # A Realtime follower cannot take the lead by sending controls.
        assert await js.do("send", id="f", event="cue", payload={}) == "ok"  # no ack asked: sent
        await lead.control("cue", {"from": "leader"})
        cue = await js.wait(on("f", "broadcast", event="cue"))
        assert cue["payload"]["seq"] == 2  # the follower's cue got no seq
        seen = await lead.next_event(Presence)
        assert seen.joins and seen.joins[0].name == "Anonymous"  # joined, not yet tracked
    finally:
        await native.close()


async def test_a_presence_key_and_the_1_0_0_serializer(server, js: RealtimeJs) -> None:
    await clients(js, server, "a")
    await js.do("client", id="old", url=rt_url(server), apikey="anon-key", vsn="1.0.0")
    topic = "collective-session-keyvsn"
    await js.subscribed("a", topic, presence={"key": "seat-7"})
    await js.do("track", id="a", payload={"user_id": "ua"})
    await js.subscribed("old", topic, broadcast={"ack": True})  # realtime-js on serializer 1.0.0
    synced = await js.wait(lambda e: on("old", "sync")(e) and "seat-7" in e["state"])
    assert synced["state"]["seat-7"][0]["user_id"] == "ua"  # the configured key, not the user id
    assert await js.do("track", id="old", payload={"user_id": "uo"}) == "ok"
    await js.wait(on("a", "join", key="uo"))
    assert await js.do("send", id="old", event="state_update", payload={"hr": 50}) == "ok"
    got = await js.wait(on("a", "broadcast", event="state_update"))
    assert got["payload"] == {"hr": 50, "userId": "uo"}
