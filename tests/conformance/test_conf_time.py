"""docs/protocol.md, **Time exchange** (and the `time` rows of the message tables), with a raw client.

The table mapping each doc statement to its test is in tests/conformance/README.md.
"""

from __future__ import annotations

import json
import time

import pytest
from confwire import TcpWs, http, take
from rawws import Raw, session_with


async def test_time_reply_echoes_t0_with_server_times(server) -> None:
    raw = await Raw.open(server.url)
    for t0 in (0.0, 123.456789, -5.5, 1e15, 1700000000.123456):
        await raw.send({"type": "time", "t0": t0})
        reply = await take(raw, "time")
        assert set(reply) == {"type", "t0", "t1", "t2"}
        assert reply["t0"] == t0
        assert raw.welcome["time"] <= reply["t1"] <= reply["t2"]


async def test_offset_and_delay_from_one_exchange(server) -> None:
    raw = await Raw.open(server.url)
    best = None
    for _ in range(10):
        t0 = time.time()
        await raw.send({"type": "time", "t0": t0})
        reply = await take(raw, "time")
        t3 = time.time()
        offset = ((reply["t1"] - t0) + (reply["t2"] - t3)) / 2
        delay = (t3 - t0) - (reply["t2"] - reply["t1"])
        assert delay >= 0
        best = min(best or (delay, offset), (delay, offset))
    assert best is not None
    # The server clock is epoch-based on this same host: the least-delayed offset is tiny.
    assert abs(best[1]) < 0.05 + best[0]


async def test_time_reply_is_its_own_frame(server) -> None:
    _lea, sid, _ = await session_with(server.url)
    ws = await TcpWs.open(server.port)
    await ws.data_frame()
    # A join and a time request in one write: the join's replies are batched, the time reply is not.
    await ws.send_json(
        {"type": "join", "session": sid, "name": "T", "rid": 1},
        {"type": "time", "t0": 42.0},
        {"type": "meta", "session": sid, "meta": {}, "rid": 2},
    )
    frames = []
    while not any(m.get("rid") == 2 for f in frames for m in f.messages()):
        frames.append(await ws.data_frame())
    for f in frames:
        msgs = f.messages()
        if any(m["type"] == "time" for m in msgs):
            assert f.payload.startswith(b"{"), "a time reply is never inside a batch"
            assert json.loads(f.payload)["t0"] == 42.0
    assert sum(m["type"] == "time" for f in frames for m in f.messages()) == 1
    ws.close()


@pytest.mark.parametrize("msg", [{"type": "time"}, {"type": "time", "t0": "1"}, {"type": "time", "t0": None}])
async def test_time_needs_a_numeric_t0(server, msg: dict[str, object]) -> None:
    raw = await Raw.open(server.url)
    await raw.send(msg)
    assert (await raw.error())["code"] == "invalid_message"


@pytest.mark.config(rate_per_second=5, burst=10)
async def test_time_messages_count_against_the_rate_limit(server) -> None:
    ws = await TcpWs.open(server.port)
    await ws.data_frame()
    await ws.send_json(*({"type": "time", "t0": float(i)} for i in range(12)))
    kinds: list[str] = []
    while "rate_limited" not in kinds:
        kinds += [m.get("code", m["type"]) for m in (await ws.data_frame()).messages()]
    assert kinds.count("time") <= 10 + 1  # the burst (plus at most one token refilled meanwhile)
    assert kinds.count("time") >= 10
    ws.close()


async def test_http_time_gives_the_same_exchange(server) -> None:
    raw = await Raw.open(server.url)
    resp = await http(server.http, "/api/time?t0=1234.5")
    assert resp.status == 200
    body = resp.json()
    assert set(body) == {"t0", "t1", "t2"}
    assert body["t0"] == 1234.5
    assert raw.welcome["time"] <= body["t1"] <= body["t2"] <= time.time() + 5
    await raw.send({"type": "time", "t0": 1.0})
    assert (await take(raw, "time"))["t1"] >= body["t2"]
