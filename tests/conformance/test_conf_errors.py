"""docs/protocol.md, **Errors**, **Rate limit**, **Close codes** and "How the server closes", with a
raw client (and a bare TCP one where the test needs to see FIN and resets).

The table mapping each doc statement to its test is in tests/conformance/README.md.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest
from confwire import (
    CLOSE,
    TEXT,
    TcpWs,
    barrier,
    frame,
    healthz,
    http,
    member,
    metric,
    reply,
    server_now,
    snapshot,
    take,
    wait_healthz,
)
from rawws import Raw, session_with
from websockets.asyncio.client import connect

World = dict[str, Any]


async def world(url: str) -> World:
    """A session with a leader, a participant and an observer, and a second session."""
    lea, sid, lea_id = await session_with(url)
    pat, pj = await member(url, sid, "Pat")
    obs, oj = await member(url, sid, "Obs", "observer")
    gone, gj = await member(url, sid, "Gone")
    await gone.close()
    await take(lea, "presence", updates=[{**gj["participants"][3], "connected": False}])
    return {
        "url": url,
        "lea": lea,
        "sid": sid,
        "lea_id": lea_id,
        "pat": pat,
        "pid": pj["you"],
        "obs": obs,
        "oid": oj["you"],
        "gid": gj["you"],
        "at": await server_now(lea),
        "out": await Raw.open(url),  # in no session
    }


def _case(
    raw: str, msg: Callable[[World], dict[str, Any]], code: str
) -> tuple[str, Callable[[World], dict[str, Any]], str]:
    return raw, msg, code


CASES = {
    "invalid_message": _case(
        "lea", lambda w: {"type": "control", "session": w["sid"], "event": 5}, "invalid_message"
    ),
    "polarity": _case(
        "lea",
        lambda w: {"type": "control", "session": w["sid"], "event": "polarity_sync", "payload": {}},
        "invalid_message",
    ),
    "meta_size": _case(
        "pat", lambda w: {"type": "meta", "session": w["sid"], "meta": {"m": "x" * 1100}}, "invalid_message"
    ),
    "unknown_type": _case("lea", lambda w: {"type": "shout", "session": w["sid"]}, "unknown_type"),
    "session_not_found": _case(
        "lea", lambda w: {"type": "join", "session": "nope-nope", "name": "x"}, "session_not_found"
    ),
    "session_exists": _case(
        "pat",
        lambda w: {"type": "create", "name": "x", "settings": {"sessionId": w["sid"]}},
        "session_exists",
    ),
    "not_in_session": _case(
        "lea", lambda w: {"type": "control", "session": "other-session", "event": "e"}, "not_in_session"
    ),
    "already_joined": _case(
        "pat", lambda w: {"type": "join", "session": w["sid"], "name": "x"}, "already_joined"
    ),
    "not_leader": _case(
        "pat", lambda w: {"type": "control", "session": w["sid"], "event": "e"}, "not_leader"
    ),
    "not_leader_state": _case(
        "pat",
        lambda w: {"type": "state_set", "session": w["sid"], "at": w["at"], "set": {"geometry.a": 1}},
        "not_leader",
    ),
    "not_leader_handover": _case(
        "pat", lambda w: {"type": "handover", "session": w["sid"], "to": w["pid"]}, "not_leader"
    ),
    "forbidden_observer": _case(
        "obs",
        lambda w: {
            "type": "state_set",
            "session": w["sid"],
            "at": w["at"],
            "set": {f"participants.{w['oid']}.a": 1},
        },
        "forbidden",
    ),
    "forbidden_area": _case(
        "pat",
        lambda w: {
            "type": "state_set",
            "session": w["sid"],
            "at": w["at"],
            "set": {f"participants.{w['lea_id']}.a": 1},
        },
        "forbidden",
    ),
    "invalid_path": _case(
        "lea",
        lambda w: {"type": "state_set", "session": w["sid"], "at": w["at"], "set": {"nowhere.a": 1}},
        "invalid_path",
    ),
    "bad_timestamp": _case(
        "lea",
        lambda w: {"type": "state_set", "session": w["sid"], "at": w["at"] + 60, "set": {"geometry.a": 1}},
        "bad_timestamp",
    ),
    "invalid_target_observer": _case(
        "lea", lambda w: {"type": "handover", "session": w["sid"], "to": w["oid"]}, "invalid_target"
    ),
    "invalid_target_dropped": _case(
        "lea", lambda w: {"type": "handover", "session": w["sid"], "to": w["gid"]}, "invalid_target"
    ),
    "resume_failed": _case(
        "out",
        lambda w: {"type": "join", "session": w["sid"], "name": "x", "resume": "bogus"},
        "resume_failed",
    ),
}


@pytest.mark.config(grace_period=30)  # "Gone" stays dropped (not removed) during the test
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
async def test_every_error_code_echoes_rid_and_session_and_changes_nothing(
    server, case: tuple[str, Callable[[World], dict[str, Any]], str]
) -> None:
    who, make, code = case
    w = await world(server.url)
    before = await snapshot(server.url, w["sid"])
    others = [w[k] for k in ("lea", "pat", "obs") if k != who]
    for raw in others:
        await barrier(raw)
    msg = make(w)
    err = await reply(w[who], msg, rid=4242)
    assert err["type"] == "error" and err["code"] == code, err
    assert isinstance(err["message"], str) and err["message"]
    assert err["rid"] == 4242
    if "session" in msg:
        assert err["session"] == msg["session"]
    after = await snapshot(server.url, w["sid"])
    for key in ("state", "seq", "leader", "settings"):
        assert after[key] == before[key], key
    assert [(p["id"], p["role"], p.get("meta"), p.get("connected")) for p in after["participants"][:4]] == [
        (p["id"], p["role"], p.get("meta"), p.get("connected")) for p in before["participants"][:4]
    ]
    known = {w["lea_id"], w["pid"], w["oid"], w["gid"]}
    for raw in others:  # nobody saw anything but probes (observers joining for the snapshots) come and go
        seen = [m for m in await barrier(raw) if not (m["type"] == "presence" and not _ids(m) & known)]
        assert seen == [], seen


def _ids(presence: dict[str, Any]) -> set[str]:
    return {p["id"] for p in presence.get("joins", []) + presence.get("updates", [])} | set(
        presence.get("leaves", [])
    )


@pytest.mark.parametrize(
    "data", ['{"session":"abc","rid":3}', '{"type":null,"rid":3}', '{"type":"Create","rid":3}']
)
async def test_unknown_type(server, data: str) -> None:
    raw = await Raw.open(server.url)
    await raw.send(data)
    err = await raw.error()
    assert (err["code"], err["rid"]) == ("unknown_type", 3)


@pytest.mark.config(rate_per_second=20, burst=10)
async def test_rate_limit_tells_once_and_has_no_debt(server) -> None:
    ws = await TcpWs.open(server.port)
    await ws.data_frame()

    async def burst(first_rid: int, n: int) -> None:
        await ws.send_json(
            *({"type": "meta", "session": "s-none", "meta": {}, "rid": first_rid + i} for i in range(n))
        )

    async def read_until(rid: int) -> list[str]:
        """Errors' codes up to the reply to `rid` (each served meta is a `not_in_session` error)."""
        out: list[str] = []
        while True:
            for m in (await ws.data_frame()).messages():
                out.append("served" if m["code"] == "not_in_session" else m["code"])
                if m.get("rid") == rid:
                    return out

    await burst(0, 16)  # 10 served, the 11th told, 5 dropped silently
    await asyncio.sleep(0.12)  # test input: time passes (2 tokens refill; the drops are not paid off)
    await ws.send_json({"type": "meta", "session": "s-none", "meta": {}, "rid": 100})
    seen = await read_until(100)
    assert seen == ["served"] * 10 + ["rate_limited", "served"], "served at once after a pause: no debt"
    await burst(200, 4)  # over the rate again before the drops are paid off: dropped silently
    await asyncio.sleep(1.0)  # test input: long enough to pay every drop off and refill the bucket
    await burst(300, 12)  # 10 served, then a drop that is told again
    seen: list[str] = []
    while seen.count("served") < 10 or "rate_limited" not in seen:
        seen += [
            ("served" if m["code"] == "not_in_session" else m["code"])
            for m in (await ws.data_frame()).messages()
        ]
    assert seen.count("rate_limited") == 1 and seen[-1] == "rate_limited", seen
    assert 11 <= seen.count("served") <= 13, seen  # 1-3 of the silent burst, then the bucket of 10
    ws.close()


async def test_flood_against_the_defaults_gets_400_one_error_then_1008(server) -> None:
    raw, sid, _ = await session_with(server.url)
    flood = json.dumps({"type": "meta", "session": sid, "meta": {}, "rid": 1})
    for _ in range(2_000):
        await raw.send(flood)
    assert await raw.closed(10) == 1008
    acks = [m for m in raw.pending if m["type"] == "ack"]
    errors = [m["code"] for m in raw.pending if m["type"] == "error"]
    assert errors == ["rate_limited"]
    assert 400 <= len(acks) <= 440, len(acks)  # the burst, plus what refilled while sending


async def test_a_closed_flooder_is_shown_dropped_and_not_counted(server) -> None:
    lea, sid, _lea_id = await session_with(server.url)
    flooder, joined = await member(server.url, sid, "Flood")
    await barrier(lea)
    assert (await healthz(server.http))["connections"] == 2
    flood = json.dumps({"type": "meta", "session": sid, "meta": {"n": 1}})
    for _ in range(2_000):
        await flooder.send(flood)
    assert await flooder.closed(10) == 1008
    update = await take_dropped(lea, joined["you"])
    assert update["connected"] is False
    await wait_healthz(server.http, connections=1)
    conns = metric((await http(server.http, "/metrics")).body.decode(), "collective_sync_connections")
    assert conns == 1


async def take_dropped(raw: Raw, pid: str) -> dict[str, Any]:
    while True:
        msg = await take(raw, "presence")
        for u in msg.get("updates", []):
            if u["id"] == pid and u.get("connected") is False:
                return dict(u)


@pytest.mark.parametrize("code", [1000, 1001, 3000, 4321])
async def test_server_echoes_the_clients_close_code(server, code: int) -> None:
    ws = await connect(server.url, ping_interval=None)
    await ws.recv()
    await ws.close(code=code)
    assert ws.protocol.close_rcvd is not None and ws.protocol.close_rcvd.code == code


async def test_shutdown_closes_with_1001(server) -> None:
    raw, _sid, _ = await session_with(server.url)
    other = await Raw.open(server.url)
    # Shutting the server down is the input here (an operator action, not visible on the wire).
    await server.server.stop()
    assert await raw.closed(5) == 1001
    assert await other.closed(5) == 1001


async def test_huge_frame_close_code_reaches_a_peer_that_keeps_writing(server) -> None:
    raw, _sid, _ = await session_with(server.url)
    await raw.send("x" * (20 << 20))  # 20 MiB: refused from its header, unread
    assert await raw.closed(10) == 1009


async def test_close_frame_then_fin(server) -> None:
    ws = await TcpWs.open(server.port)
    await ws.data_frame()
    ws.send_raw(frame(TEXT, b"", length=2 << 20))  # closes with 1009
    close = await ws.close_frame()
    assert close.close_code == 1009
    start = time.monotonic()
    assert await ws.eof(1), "FIN follows the close frame"
    assert time.monotonic() - start < 0.5
    ws.close()


@pytest.mark.parametrize(
    "code",
    [
        1009,
        1002,
    ],
)
async def test_closed_connection_is_uncounted_and_dropped_from_the_decision(server, code: int) -> None:
    """ "From the moment it decides to close a connection, the server ... no longer counts it
    (/healthz ...) and shows its participants as dropped": not only after the linger."""
    lea, sid, _ = await session_with(server.url)
    ws = await TcpWs.open(server.port)
    await ws.data_frame()
    await ws.send_json({"type": "join", "session": sid, "name": "Doomed", "rid": 1})
    (joined,) = [m for m in (await ws.data_frame()).messages() if m["type"] == "joined"]
    await barrier(lea)
    await wait_healthz(server.http, connections=2)
    if code == 1009:
        ws.send_raw(frame(TEXT, b"", length=2 << 20))
    else:
        ws.send_raw(frame(0x0, b"{}"))  # a bare continuation frame
    assert (await ws.close_frame()).close_code == code
    decided = time.monotonic()
    await take_dropped(lea, joined["you"])
    await wait_healthz(server.http, connections=1)
    assert time.monotonic() - decided < 1.0, "counted and shown connected until the 2 s linger ended"
    ws.close()


def _tcp_state(sock: socket.socket) -> str:
    """The kernel's TCP state of `sock` (Linux TCP_INFO: the first byte)."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
    names = {
        1: "ESTABLISHED",
        4: "FIN_WAIT1",
        5: "FIN_WAIT2",
        6: "TIME_WAIT",
        7: "CLOSE",
        8: "CLOSE_WAIT",
        9: "LAST_ACK",
        11: "CLOSING",
    }
    return names.get(info[0], str(info[0]))


async def test_peer_that_never_closes_is_dropped_after_the_linger(server) -> None:
    ws = await TcpWs.open(server.port)
    await ws.data_frame()
    ws.send_raw(frame(TEXT, b"", length=2 << 20))
    close = await ws.close_frame()
    assert close.opcode == CLOSE and close.close_code == 1009
    start = time.monotonic()
    sock = socket.fromfd(ws.writer.get_extra_info("socket").fileno(), socket.AF_INET, socket.SOCK_STREAM)
    await ws.eof(1)
    assert _tcp_state(sock) == "CLOSE_WAIT", "half-closed by the server; we have not closed"
    while _tcp_state(sock) == "CLOSE_WAIT":  # until the server drops it (RST): ~2 s after the close
        assert time.monotonic() - start < 4, "not dropped after the linger"
        try:
            sock.send(b"\x00")  # keep writing: the server reads and discards it, then resets
        except OSError:
            break
        await asyncio.sleep(0.05)
    assert 1.5 <= time.monotonic() - start <= 3.5
    sock.close()
    ws.close()


@pytest.mark.config(rate_per_second=5_000, burst=5_000, socket_send_buffer=64 * 1024)
async def test_slow_consumer_is_closed_with_4002(server) -> None:
    lea, sid, _ = await session_with(server.url)
    sleeper = await TcpWs.open(server.port, rcvbuf=16 * 1024)
    await sleeper.data_frame()
    await sleeper.send_json({"type": "join", "session": sid, "name": "Zzz", "role": "observer", "rid": 1})
    (presence,) = (await take(lea, "presence"))["joins"]
    assert (await healthz(server.http))["connections"] == 2
    control = {"type": "control", "session": sid, "event": "e", "payload": {"blob": "x" * 30_000}}
    rid = 10
    async with asyncio.timeout(30):
        while True:  # reliable messages only; the sleeper reads nothing
            rid += 1
            await reply(lea, control, rid)
            dropped = [
                u
                for m in lea.pending
                if m["type"] == "presence"
                for u in m.get("updates", [])
                if u["id"] == presence["id"] and u.get("connected") is False
            ]
            if dropped:
                break
            lea.pending = [m for m in lea.pending if m["type"] != "control"]
    sent = (rid - 10) * 30_000
    assert sent > 4 * 1024 * 1024, f"closed after only {sent} bytes of backlog"
    await wait_healthz(server.http, connections=1)
    text = (await http(server.http, "/metrics")).body.decode()
    assert metric(text, "collective_sync_slow_consumer_closes_total") == 1
    sleeper.close()
