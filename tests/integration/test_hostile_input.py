"""Hostile bytes, floods and peers that do not read, with a raw client (not the SDK).

Each refusal must be a typed error (or the documented close code, actually seen by the peer),
leave the connection usable where the protocol says so, and change nothing in the session.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from typing import Any

import pytest
from rawws import Raw, session_with
from support import make_config

from collective_sync.protocol.codec import MAX_DEPTH
from collective_sync.server.config import ServerConfig


@pytest.fixture
def server_config() -> ServerConfig:
    config = make_config(rate_per_second=200, burst=400)
    config.session.max_state_keys = 8
    return config


async def assert_alive_and_unchanged(raw: Raw, sid: str, values: dict[str, Any]) -> None:
    """The connection still serves requests and the session's state is exactly `values`."""
    probe = await raw.request({"type": "join", "session": sid, "name": "again"}, rid=999)
    assert probe["code"] == "already_joined"
    other = await Raw.open(_url(raw))
    joined = await other.request({"type": "join", "session": sid, "name": "Obs", "role": "observer"}, rid=1)
    assert joined["state"]["values"] == values
    assert joined["seq"] == 0
    await other.close()


def _url(raw: Raw) -> str:
    host, port = raw.ws.remote_address[:2]
    return f"ws://{host}:{port}/ws"


BAD_UTF8 = [b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80", b"\xc0\xaf", b"\xe2\x82"]


@pytest.mark.parametrize("text", [True, False], ids=["text", "binary"])
@pytest.mark.parametrize("bad", BAD_UTF8, ids=lambda b: b.hex())
async def test_invalid_utf8_anywhere_is_malformed(server, bad: bytes, text: bool) -> None:
    raw, sid, _ = await session_with(server.url)
    for frame in (
        b'{"type":"create","name":"' + bad + b'","rid":5}',  # in a known field
        b'{"type":"meta","session":"' + sid.encode() + b'","meta":{},"x":"' + bad + b'"}',  # ignored field
        b'{"type":"state_set","session":"' + sid.encode() + b'","at":1,"set":{"geometry.' + bad + b'":1}}',
    ):
        await raw.send(frame, text=text)
        err = await raw.error()
        assert err["code"] == "malformed", (frame, err)
    await assert_alive_and_unchanged(raw, sid, {})


async def test_escaped_lone_surrogates_are_refused_and_pairs_accepted(server) -> None:
    raw, sid, _me = await session_with(server.url)
    lone = f'{{"type":"meta","session":"{sid}","meta":{{"n":"\\ud800"}},"rid":2}}'
    await raw.send(lone)
    assert (await raw.error())["code"] == "malformed"
    pair = f'{{"type":"meta","session":"{sid}","meta":{{"n":"\\ud83d\\ude00"}},"rid":3}}'
    await raw.send(pair)
    assert (await raw.expect("ack", rid=3))["rid"] == 3


def nested(depth: int, leaf: str = "1") -> str:
    """`depth` levels of arrays around a leaf."""
    return "[" * depth + leaf + "]" * depth


async def test_nesting_limit(server) -> None:
    raw, sid, _ = await session_with(server.url)
    # The message object is level 1, `payload` level 2: MAX_DEPTH - 1 arrays reach the limit exactly.
    ok = f'{{"type":"control","session":"{sid}","event":"x","payload":{nested(MAX_DEPTH - 1)},"rid":2}}'
    await raw.send(ok)
    assert (await raw.expect("ack", rid=2))["seq"] == 1
    for depth in (MAX_DEPTH, 1_000, 30_000):
        for field in ("payload", "meta"):
            kind = "control" if field == "payload" else "meta"
            value = nested(depth) if field == "payload" else f'{{"a":{nested(depth - 1)}}}'
            frame = f'{{"type":"{kind}","session":"{sid}","event":"x","{field}":{value},"rid":3}}'
            await raw.send(frame)
            err = await raw.error()
            assert err["code"] == "malformed", (depth, field, err)
    # Brackets inside strings are text, not structure.
    text = '{{"type":"control","session":"{}","event":"x","payload":"{}","rid":4}}'.format(sid, "[{" * 5000)
    await raw.send(text)
    assert (await raw.expect("ack", rid=4))["seq"] == 2


async def test_integers_beyond_what_every_client_reads_exactly_are_refused(server) -> None:
    raw, sid, _ = await session_with(server.url)
    for literal in ("9007199254740992", "-9007199254740992", "1" + "0" * 400):
        frame = '{"type":"state_set","session":"%s","at":%f,"set":{"geometry.n":%s},"rid":7}'
        await raw.send(frame % (sid, raw.welcome["time"], literal))
        err = await raw.error()
        assert (err["code"], err["rid"]) == ("invalid_message", 7), literal
    frame = '{"type":"state_set","session":"%s","at":%f,"set":{"geometry.n":9007199254740991},"rid":8}'
    await raw.send(frame % (sid, raw.welcome["time"]))
    await raw.expect("ack", rid=8)


async def test_value_and_its_parent_in_one_update_is_invalid_path(server) -> None:
    raw, sid, _ = await session_with(server.url)
    at = raw.welcome["time"]
    for changes in ({"geometry.e": 1, "geometry.e.f": 2}, {"geometry.e.f": 2, "geometry.e": None}):
        reply = await raw.request({"type": "state_set", "session": sid, "at": at, "set": changes}, rid=2)
        assert reply["code"] == "invalid_path", changes
    await assert_alive_and_unchanged(raw, sid, {})


async def test_deleted_paths_do_not_count_toward_the_key_limit(server) -> None:
    raw, sid, _ = await session_with(server.url)
    at = raw.welcome["time"]
    limit = server.config.session.max_state_keys
    for round_ in range(3):  # fill, empty, fill with other names: never state_full
        paths = [f"geometry.r{round_}k{i}" for i in range(limit)]
        full = await raw.request(
            {"type": "state_set", "session": sid, "at": at, "set": dict.fromkeys(paths, 1)}, 1
        )
        assert full["type"] == "ack", full
        empty = await raw.request(
            {"type": "state_set", "session": sid, "at": at, "set": dict.fromkeys(paths)}, 2
        )
        assert empty["type"] == "ack", empty
    over = {f"geometry.x{i}": 1 for i in range(limit + 1)}
    reply = await raw.request({"type": "state_set", "session": sid, "at": at, "set": over}, rid=3)
    assert reply["code"] == "state_full"


async def test_huge_frame_close_code_reaches_a_peer_that_keeps_writing(server) -> None:
    raw, _sid, _ = await session_with(server.url)
    await raw.send("x" * (20 << 20))  # 20 MiB: the server refuses it from its header, unread
    assert await raw.closed(10) == 1009


async def test_back_to_back_flood_gets_one_rate_limited_then_1008(server) -> None:
    raw, sid, _ = await session_with(server.url)
    frame = json.dumps({"type": "meta", "session": sid, "meta": {}})
    for _ in range(2_000):
        await raw.send(frame)
    assert await raw.closed(10) == 1008
    assert [m["code"] for m in raw.pending if m["type"] == "error"] == ["rate_limited"]


async def test_under_the_rate_again_means_served_again(server) -> None:
    """A bucket that refills: after a burst over the limit and a pause, no debt is left to pay."""
    raw, sid, _ = await session_with(server.url)
    config = server.config
    flood = json.dumps({"type": "meta", "session": sid, "meta": {}})
    for _ in range(config.burst * 7 // 4):  # the burst, then drops (not yet enough to close)
        await raw.send(flood)
    assert (await raw.error())["code"] == "rate_limited"
    await asyncio.sleep(0.6 * config.burst / config.rate_per_second)  # test input: time passes
    n = config.burst // 2  # the bucket has refilled by more than this during the pause
    for i in range(n):
        await raw.send({"type": "meta", "session": sid, "meta": {}, "rid": 100 + i})
    acks = [await raw.expect("ack", rid=100 + i) for i in range(n)]
    assert len(acks) == n


def _http(server, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(server.http + path, method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


@pytest.mark.parametrize(
    "query", ["", "?t0=", "?t0=1_000", "?t0=inf", "?t0=nan", "?t0=1e999", "?t0=1&t0=2", "?t0=0x10"]
)
async def test_api_time_refuses_anything_but_one_finite_number(server, query: str) -> None:
    status, _, body = await asyncio.to_thread(_http, server, "GET", "/api/time" + query)
    assert status == 400, (query, body)
    assert json.loads(body)["error"] == "invalid_message"


async def test_api_time_accepts_a_json_number(server) -> None:
    status, _, body = await asyncio.to_thread(_http, server, "GET", "/api/time?t0=-12.5e-3")
    assert status == 200
    assert json.loads(body)["t0"] == -12.5e-3


async def test_head_answers_like_get_without_body(server) -> None:
    for path in ("/", "/healthz", "/nowhere"):
        get_status, get_headers, get_body = await asyncio.to_thread(_http, server, "GET", path)
        status, headers, body = await asyncio.to_thread(_http, server, "HEAD", path)
        assert (status, body) == (get_status, b""), path
        assert int(headers["Content-Length"]) == len(get_body)
        assert headers["Content-Type"] == get_headers["Content-Type"]


async def test_other_methods_get_405(server) -> None:
    status, headers, _ = await asyncio.to_thread(_http, server, "POST", "/api/time?t0=1")
    assert status == 405
    assert headers["Allow"] == "GET, HEAD"


async def test_security_headers_on_every_response(server) -> None:
    for method, path in (("GET", "/"), ("GET", "/api/sessions"), ("GET", "/nowhere"), ("HEAD", "/")):
        _, headers, _ = await asyncio.to_thread(_http, server, method, path)
        csp = headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp and "default-src 'self'" in csp
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "no-referrer"
        assert headers["X-Frame-Options"] == "DENY"


@pytest.mark.parametrize("token", ["é", "\\u00e9", "a b", "x" * 129])
async def test_resume_token_outside_its_alphabet_is_invalid_message(server, token: str) -> None:
    """Found by the fuzzer: a non-ASCII token used to crash the join (1011)."""
    _raw, sid, _ = await session_with(server.url)
    other = await Raw.open(server.url)
    frame = f'{{"type":"join","session":"{sid}","name":"x","resume":"{token}","rid":4}}'
    await other.send(frame)
    err = await other.error()
    assert (err["code"], err["rid"]) == ("invalid_message", 4)
    wrong = await other.request({"type": "join", "session": sid, "name": "x", "resume": "A" * 24}, rid=5)
    assert wrong["code"] == "resume_failed"  # well-formed but unknown: still the documented refusal
