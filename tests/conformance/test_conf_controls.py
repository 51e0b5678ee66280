"""docs/protocol.md, **Control messages** and **Ordering and delivery guarantees**, with a raw client.

The table mapping each doc statement to its test is in tests/conformance/README.md.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from confwire import barrier, member, reply, server_now, snapshot, take
from rawws import Raw, session_with

POLARITY: dict[str, Any] = {
    "lightChannel": {"enabled": True, "amplitude": 0.8, "phase": 0.0, "resonanceMode": "harmonic"},
    "darkChannel": {"enabled": True, "amplitude": 0.4, "phase": 3.14159, "resonanceMode": "chaotic"},
    "polarityBalance": -0.25,
    "darkEnergyDrift": {"driftRate": 0.01, "expansionFactor": 1.2},
}


async def test_only_the_leader_sends_controls(server) -> None:
    _lea, sid, _ = await session_with(server.url)
    pat, _ = await member(server.url, sid)
    obs, _ = await member(server.url, sid, "Obs", "observer")
    for rid, raw in ((2, pat), (3, obs)):
        err = await reply(raw, {"type": "control", "session": sid, "event": "e"}, rid)
        assert (err["code"], err["rid"], err["session"]) == ("not_leader", rid, sid)
    assert (await snapshot(server.url, sid))["seq"] == 0
    assert not [m for m in await barrier(obs) if m["type"] == "control"]


async def test_seq_counts_per_session_and_is_acked(server) -> None:
    a, sid_a, _ = await session_with(server.url)
    b, sid_b, _ = await session_with(server.url)
    for i in range(1, 4):
        ack = await reply(a, {"type": "control", "session": sid_a, "event": "e"}, rid=i)
        assert ack == {"type": "ack", "rid": i, "seq": i}
    ack = await reply(b, {"type": "control", "session": sid_b, "event": "e"}, rid=9)
    assert ack["seq"] == 1
    assert [m["seq"] for m in await barrier(a) if m["type"] == "control"] == [1, 2, 3]


async def test_at_is_stamped_or_kept(server) -> None:
    lea, sid, _ = await session_with(server.url)
    before = await server_now(lea)
    await lea.send({"type": "control", "session": sid, "event": "e"})
    stamped = await take(lea, "control")
    after = await server_now(lea)
    assert before <= stamped["at"] <= after
    chosen = after + 0.25
    await lea.send({"type": "control", "session": sid, "event": "e", "at": chosen})
    assert (await take(lea, "control", seq=2))["at"] == chosen


@pytest.mark.parametrize(("offset", "ok"), [(-29.0, True), (29.0, True), (-31.0, False), (31.0, False)])
async def test_control_at_beyond_the_clock_skew_is_bad_timestamp(server, offset: float, ok: bool) -> None:
    lea, sid, _ = await session_with(server.url)
    at = await server_now(lea) + offset
    answer = await reply(lea, {"type": "control", "session": sid, "event": "e", "at": at}, rid=2)
    if ok:
        assert answer["type"] == "ack"
    else:
        assert (answer["code"], answer["session"]) == ("bad_timestamp", sid)
        assert (await snapshot(server.url, sid))["seq"] == 0


async def test_negative_at_is_invalid_message(server) -> None:
    """`at` "must be a number ≥ 0 (else `invalid_message`...)"."""
    lea, sid, _ = await session_with(server.url)
    answer = await reply(lea, {"type": "control", "session": sid, "event": "e", "at": -1.0}, rid=2)
    assert (answer["code"], answer["rid"]) == ("invalid_message", 2)
    assert (await snapshot(server.url, sid))["seq"] == 0


async def test_control_reaches_every_member_including_the_sender(server) -> None:
    lea, sid, lea_id = await session_with(server.url)
    pat, _ = await member(server.url, sid)
    obs, _ = await member(server.url, sid, "Obs", "observer")
    at = await server_now(lea) + 0.1
    await lea.send({"type": "control", "session": sid, "event": "go", "payload": {"n": 1}, "at": at})
    for raw in (lea, pat, obs):
        ctl = await take(raw, "control")
        assert ctl == {
            "type": "control",
            "session": sid,
            "seq": 1,
            "at": at,
            "event": "go",
            "from": lea_id,
            "payload": {"n": 1},
        }


async def test_controls_arrive_in_seq_order_without_loss(server) -> None:
    lea, sid, _ = await session_with(server.url)
    pat, _ = await member(server.url, sid)
    n = 300  # within the burst of 400
    for i in range(n):
        await lea.send(
            {"type": "control", "session": sid, "event": "e", "payload": {"i": i, "pad": "x" * 200}}
        )
    for raw in (lea, pat):
        got = [await take(raw, "control") for _ in range(n)]
        assert [m["seq"] for m in got] == list(range(1, n + 1))
        assert [m["payload"]["i"] for m in got] == list(range(n))


@pytest.mark.parametrize(
    ("event", "ok"),
    [
        ("a", True),
        ("a" * 64, True),
        ("Z9_.:-x", True),
        ("a" * 65, False),
        ("9lives", False),
        ("_x", False),
        ("", False),
        ("a b", False),
        ("a/b", False),
    ],
)
async def test_event_name_pattern(server, event: str, ok: bool) -> None:
    lea, sid, _ = await session_with(server.url)
    answer = await reply(lea, {"type": "control", "session": sid, "event": event}, rid=2)
    assert answer["type"] == ("ack" if ok else "error"), answer
    if not ok:
        assert answer["code"] == "invalid_message"


async def test_other_events_carry_any_json(server) -> None:
    lea, sid, _ = await session_with(server.url)
    pat, _ = await member(server.url, sid)
    for i, payload in enumerate(
        [{"a": [1, {"b": None}], "c": "ü"}, [1, 2], "text", 3.5, True, {"x": "y" * 60_000}]
    ):
        await lea.send({"type": "control", "session": sid, "event": "anything", "payload": payload})
        assert (await take(pat, "control", seq=i + 1))["payload"] == payload


async def test_polarity_sync_example_is_accepted(server) -> None:
    lea, sid, _ = await session_with(server.url)
    pat, _ = await member(server.url, sid)
    ack = await reply(
        lea, {"type": "control", "session": sid, "event": "polarity_sync", "payload": POLARITY}, 2
    )
    assert ack["seq"] == 1
    assert (await take(pat, "control"))["payload"] == POLARITY


def _variant(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    payload = copy.deepcopy(POLARITY)
    node = payload
    for key in path[:-1]:
        node = node[key]
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return payload


_DELETE = object()
BAD_POLARITY = {
    "unknown-top": (("extra",), 1),
    "unknown-channel-field": (("lightChannel", "colour"), "red"),
    "unknown-drift-field": (("darkEnergyDrift", "x"), 0),
    "amplitude>1": (("lightChannel", "amplitude"), 1.01),
    "amplitude<0": (("darkChannel", "amplitude"), -0.01),
    "phase>1000": (("lightChannel", "phase"), 1000.5),
    "phase<-1000": (("darkChannel", "phase"), -1000.5),
    "resonance-mode": (("lightChannel", "resonanceMode"), "random"),
    "balance>1": (("polarityBalance",), 1.5),
    "balance<-1": (("polarityBalance",), -1.01),
    "drift-rate": (("darkEnergyDrift", "driftRate"), 1.5e6),
    "expansion": (("darkEnergyDrift", "expansionFactor"), -1.5e6),
    "enabled-type": (("lightChannel", "enabled"), "yes"),
}


@pytest.mark.parametrize("case", BAD_POLARITY.values(), ids=BAD_POLARITY.keys())
async def test_invalid_polarity_sync_is_refused(server, case: tuple[tuple[str, ...], Any]) -> None:
    lea, sid, _ = await session_with(server.url)
    payload = _variant(*case)
    err = await reply(
        lea, {"type": "control", "session": sid, "event": "polarity_sync", "payload": payload}, 2
    )
    assert (err["code"], err["rid"], err["session"]) == ("invalid_message", 2, sid)
    assert (await snapshot(server.url, sid))["seq"] == 0


@pytest.mark.parametrize("value", [1000.0, -1000.0, 1e6, -1e6])
async def test_polarity_sync_bounds_are_inclusive(server, value: float) -> None:
    lea, sid, _ = await session_with(server.url)
    payload = _variant(("lightChannel", "phase"), max(-1000.0, min(1000.0, value)))
    payload = {**payload, "darkEnergyDrift": {"driftRate": value, "expansionFactor": value}}
    ack = await reply(
        lea, {"type": "control", "session": sid, "event": "polarity_sync", "payload": payload}, 2
    )
    assert ack["type"] == "ack", ack


async def test_playout_delay_is_stored_for_later_joiners(server) -> None:
    lea, sid, _ = await session_with(server.url)
    for rid, delay in ((2, 0.5), (3, 2), (4, 0)):
        ack = await reply(
            lea,
            {"type": "control", "session": sid, "event": "playout_delay", "payload": {"delay": delay}},
            rid,
        )
        assert ack["type"] == "ack", ack
        ctl = await take(lea, "control", seq=ack["seq"])
        assert ctl["payload"] == {"delay": delay}
        _, joined = await member(server.url, sid, f"Late{rid}")
        assert joined["settings"].get("playoutDelay") == delay


@pytest.mark.parametrize(
    "payload", [{"delay": 2.5}, {"delay": -0.1}, {"delay": 0.2, "x": 1}, {}, {"delay": "1"}, 0.3]
)
async def test_invalid_playout_delay_is_refused(server, payload: Any) -> None:
    lea, sid, _ = await session_with(server.url)
    err = await reply(
        lea, {"type": "control", "session": sid, "event": "playout_delay", "payload": payload}, 2
    )
    assert err["code"] == "invalid_message"
    after = await snapshot(server.url, sid)
    assert (after["seq"], after["settings"].get("playoutDelay", 0.15)) == (0, 0.15)


@pytest.mark.config(rate_per_second=100_000, burst=100_000, grace_period=30)  # resumed within it
async def test_history_keeps_the_last_1024_controls(server) -> None:
    lea, sid, _ = await session_with(server.url)
    pat = await Raw.open(server.url)
    joined = await reply(pat, {"type": "join", "session": sid, "name": "Pat"}, rid=1)
    await pat.close()
    await take(lea, "presence", updates=[{**joined["participants"][1], "connected": False}])
    n = 1030
    for i in range(n):
        await lea.send({"type": "control", "session": sid, "event": "e", "payload": i})
    await take(lea, "control", seq=n, timeout=15)
    back = await Raw.open(server.url)
    await back.send(
        {"type": "join", "session": sid, "name": "P", "resume": joined["token"], "lastSeq": 0, "rid": 2}
    )
    assert (await back.recv())["type"] == "joined"
    replay = [await back.recv() for _ in range(1024)]
    assert [m["seq"] for m in replay] == list(range(n - 1023, n + 1))
    assert [m for m in await barrier(back) if m["type"] == "control"] == []


async def test_messages_keep_production_order(server) -> None:
    lea, sid, _lea_id = await session_with(server.url)
    pat, _joined = await member(server.url, sid)
    await barrier(lea)
    at = await server_now(lea)
    script: list[dict[str, Any]] = []
    for i in range(40):
        script.append({"type": "control", "session": sid, "event": "e", "payload": i})
        script.append({"type": "state_set", "session": sid, "at": at + i * 1e-3, "set": {"geometry.i": i}})
        script.append({"type": "meta", "session": sid, "meta": {"i": i}})
    for msg in script:
        await lea.send(msg)
    got = await barrier(lea)
    kinds = [m["type"] for m in got]
    assert kinds == ["control", "state", "presence"] * 40
    assert [m["payload"] for m in got if m["type"] == "control"] == list(range(40))
    vs = [m["v"] for m in got if m["type"] == "state"]
    assert vs == sorted(vs) and len(set(vs)) == 40
    seen = [m for m in await barrier(pat) if m["type"] in ("control", "state", "presence")]
    assert [m["type"] for m in seen] == kinds
