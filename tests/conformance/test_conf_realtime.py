"""docs/supabase.md against the server with a raw WebSocket speaking Phoenix (no Supabase client):
exact frames in and out, refusals, hostile frames, and the get-server-time function path."""

from __future__ import annotations

import asyncio
import json
import struct
import urllib.error
import urllib.request
from typing import Any

import pytest
from rawws import Raw
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

TIMEOUT = 5.0
POLARITY = {
    "lightChannel": {"enabled": True, "amplitude": 0.8, "phase": 0.0, "resonanceMode": "harmonic"},
    "darkChannel": {"enabled": True, "amplitude": 0.4, "phase": 3.0, "resonanceMode": "chaotic"},
    "polarityBalance": -0.25,
    "darkEnergyDrift": {"driftRate": 0.01, "expansionFactor": 1.2},
}


class Phx:
    """One raw Phoenix connection (serializer 2.0.0 unless told): `send` a message, `recv` the
    next one as [join_ref, ref, topic, event, payload]."""

    def __init__(self, ws: ClientConnection, vsn: str):
        self.ws = ws
        self.vsn = vsn
        self.refs = iter(range(1, 1 << 30))
        self.pending: list[list[Any]] = []

    @classmethod
    async def open(cls, server: Any, vsn: str = "2.0.0", **headers: str) -> Phx:
        url = f"ws://127.0.0.1:{server.port}/realtime/v1/websocket?apikey=anon&vsn={vsn}"
        return cls(await connect(url, additional_headers=headers or None, ping_interval=None), vsn)

    async def send(self, topic: str, event: str, payload: Any, join_ref: str | None = None) -> str:
        ref = str(next(self.refs))
        if self.vsn == "2.0.0":
            await self.ws.send(json.dumps([join_ref, ref, topic, event, payload]))
        else:
            msg = {"topic": topic, "event": event, "payload": payload, "ref": ref, "join_ref": join_ref}
            await self.ws.send(json.dumps(msg))
        return ref

    async def _read(self, timeout: float) -> list[Any]:
        frame = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        if isinstance(frame, dict):
            return [frame["join_ref"], frame["ref"], frame["topic"], frame["event"], frame["payload"]]
        return list(frame)

    async def recv(self, timeout: float = TIMEOUT) -> list[Any]:
        return self.pending.pop(0) if self.pending else await self._read(timeout)

    async def expect(self, event: str, topic: str | None = None, ref: str | None = None) -> list[Any]:
        """The first message with this event (and topic/ref); others stay queued for later."""

        def match(msg: list[Any]) -> bool:
            return msg[3] == event and topic in (None, msg[2]) and ref in (None, msg[1])

        for i, msg in enumerate(self.pending):
            if match(msg):
                return self.pending.pop(i)
        while True:
            msg = await self._read(TIMEOUT)
            if match(msg):
                return msg
            self.pending.append(msg)

    async def reply(self, ref: str) -> dict[str, Any]:
        """The phx_reply payload {status, response} to the push with `ref`."""
        msg = await self.expect("phx_reply", ref=ref)
        return dict(msg[4])

    async def join(self, sid: str, **config: Any) -> tuple[str, dict[str, Any]]:
        """Join `collective-session-<sid>`: (the topic, the presence_state that follows the reply)."""
        topic = f"realtime:collective-session-{sid}"
        ref = await self.send(
            topic, "phx_join", {"config": config, "access_token": "anon"}, join_ref="j" + sid
        )
        assert await self.reply(ref) == {"status": "ok", "response": {"postgres_changes": []}}
        state = await self.expect("presence_state", topic)
        assert state[0] == "j" + sid  # pushes carry the channel's join_ref
        return topic, state[4]

    async def alive(self) -> None:
        """A heartbeat is still answered: the connection survived what came before."""
        ref = await self.send("phoenix", "heartbeat", {})
        assert await self.reply(ref) == {"status": "ok", "response": {}}


async def test_heartbeat_reply_is_the_exact_phoenix_frame(server) -> None:
    phx = await Phx.open(server)
    await phx.ws.send('[null,"7","phoenix","heartbeat",{}]')
    assert json.loads(await phx.ws.recv()) == [
        None,
        "7",
        "phoenix",
        "phx_reply",
        {"status": "ok", "response": {}},
    ]


async def test_joining_opens_the_session_and_the_first_to_join_leads(server) -> None:
    phx = await Phx.open(server)
    topic, state = await phx.join("conf1")
    assert state == {}  # joined but not tracked: nobody is present yet
    ref = await phx.send(
        topic, "presence", {"type": "presence", "event": "track", "payload": {"user_id": "u1"}}
    )
    assert (await phx.reply(ref))["status"] == "ok"
    diff = await phx.expect("presence_diff", topic)
    (meta,) = diff[4]["joins"]["u1"]["metas"]
    assert (meta["role"], meta["user_id"], diff[4]["leaves"]) == ("facilitator", "u1", {})
    native = await Raw.open(server.url)  # the native protocol sees the same session
    joined = await native.request({"type": "join", "session": "conf1", "name": "Nat"}, rid=1)
    assert joined["leader"] == meta["participant_id"]


async def test_serializer_1_0_0_speaks_objects(server) -> None:
    phx = await Phx.open(server, vsn="1.0.0")
    await phx.ws.send(json.dumps({"topic": "phoenix", "event": "heartbeat", "payload": {}, "ref": "3"}))
    reply = json.loads(await phx.ws.recv())
    assert reply == {
        "join_ref": None,
        "ref": "3",
        "topic": "phoenix",
        "event": "phx_reply",
        "payload": reply["payload"],
    }
    assert reply["payload"] == {"status": "ok", "response": {}}
    await phx.join("conf10")


async def test_an_unknown_serializer_version_is_refused_at_the_upgrade(server) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await Phx.open(server, vsn="3.0.0")
    assert refused.value.response.status_code == 400


async def test_a_foreign_origin_is_refused_at_the_upgrade(server) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await Phx.open(server, Origin="https://evil.example")
    assert refused.value.response.status_code == 403


@pytest.mark.parametrize(
    ("topic", "config", "code"),
    [
        ("realtime:other-room", {}, "session_not_found"),
        ("realtime:collective-session-x", {}, "session_not_found"),  # id too short
        ("realtime:collective-session-ok1", {"postgres_changes": [{"event": "*"}]}, "invalid_message"),
    ],
)
async def test_joins_that_are_not_served_are_refused(server, topic: str, config: dict, code: str) -> None:
    phx = await Phx.open(server)
    ref = await phx.send(topic, "phx_join", {"config": config}, join_ref="1")
    reply = await phx.reply(ref)
    assert (reply["status"], reply["response"]["code"]) == ("error", code)
    assert server.server.node.sessions == {}


def binary_push(topic: str, event: str, payload: bytes, ref: str = "9", enc: int = 1) -> bytes:
    fields = [b"j", ref.encode(), topic.encode(), event.encode(), b""]
    return struct.pack("7B", 3, *(len(f) for f in fields), enc) + b"".join(fields) + payload


async def test_a_binary_broadcast_push_from_the_leader_reaches_the_others(server) -> None:
    lead, other = await Phx.open(server), await Phx.open(server)
    topic, _ = await lead.join("conf2", broadcast={"ack": True})
    await other.join("conf2")
    body = json.dumps({**POLARITY, "timestamp": 1.0e12 + 0}).encode()
    # A timestamp far from now is refused like a native `at` (bad_timestamp)...
    await lead.ws.send(binary_push(topic, "polarity_sync", body, ref="41"))
    refused = await lead.reply("41")
    assert (refused["status"], refused["response"]["code"]) == ("error", "bad_timestamp")
    # ...one without a timestamp is stamped by the server, acked, and broadcast.
    await lead.ws.send(binary_push(topic, "polarity_sync", json.dumps(POLARITY).encode(), ref="42"))
    assert await lead.reply("42") == {"status": "ok", "response": {}}
    got = await other.expect("broadcast", topic)
    assert (got[0], got[1]) == (None, None)  # a broadcast is the same frame for every member
    assert got[4]["type"] == "broadcast" and got[4]["event"] == "polarity_sync"
    assert {k: got[4]["payload"][k] for k in POLARITY} == POLARITY
    assert got[4]["payload"]["seq"] == 1


@pytest.mark.parametrize(
    ("event", "payload", "code"),
    [
        ("presence", {"type": "presence", "event": "track", "payload": [1]}, "invalid_message"),
        ("presence", {"type": "presence", "event": "sing"}, "invalid_message"),
        ("broadcast", {"type": "broadcast", "event": "state_update", "payload": 5}, "invalid_message"),
        ("broadcast", {"type": "broadcast", "event": "state_update", "payload": {"a b": 1}}, "invalid_path"),
        ("broadcast", {"type": "broadcast", "event": "signal", "payload": {"signal": 1}}, "invalid_message"),
        (
            "broadcast",
            {"type": "broadcast", "event": "signal", "payload": {"to": "nobody"}},
            "invalid_target",
        ),
        (
            "broadcast",
            {"type": "broadcast", "event": "cue", "payload": {"timestamp": "soon"}},
            "invalid_message",
        ),
        ("broadcast", {"type": "broadcast", "event": "bad event!", "payload": {}}, "invalid_message"),
        ("broadcast", {"type": "broadcast", "payload": {}}, "invalid_message"),
        ("broadcast", {"type": "broadcast", "event": "cue", "payload": {"n": 2**60}}, "invalid_message"),
        ("phx_unknown", {}, "unknown_type"),
        ("broadcast", [], "invalid_message"),
    ],
)
async def test_bad_pushes_get_an_error_reply_and_change_nothing(
    server, event: str, payload: Any, code: str
) -> None:
    phx = await Phx.open(server)
    topic, _ = await phx.join("conf3", broadcast={"ack": True})
    ref = await phx.send(topic, event, payload, join_ref="jconf3")
    reply = await phx.reply(ref)
    assert (reply["status"], reply["response"]["code"]) == ("error", code)
    session = server.server.node.sessions["conf3"]
    assert (session.seq, session.state.version) == (0, 0)
    await phx.alive()


async def test_pushes_before_joining_are_refused(server) -> None:
    phx = await Phx.open(server)
    ref = await phx.send("realtime:collective-session-conf4", "broadcast", {"event": "cue", "payload": {}})
    reply = await phx.reply(ref)
    assert (reply["status"], reply["response"]["code"]) == ("error", "not_in_session")


@pytest.mark.parametrize(
    ("frame", "binary"),
    [
        (b"not json at all", False),
        (b'{"topic":"phoenix"}', False),  # an object under 2.0.0
        (b'["1","2","phoenix"]', False),
        (b"[" * 100 + b"]" * 100, False),
        (b'[null,"1","phoenix","heartbeat","\\ud800"]', False),
        (b"\xff\xfe", False),
        (b'[null,"1","phoenix","heartbeat",{"a":"\xff"}]', False),  # invalid UTF-8 in a string
        (binary_push("realtime:collective-session-conf5", "cue", b'{"a":"\xed\xa0\x80"}'), True),
        (b"\x04\x00\x00\x00\x00", True),
        (b"\x03\xff\xff\xff\xff\xff\x01ab", True),
        (binary_push("realtime:collective-session-conf5", "cue", b"\x00\x01", enc=0), True),
    ],
)
async def test_hostile_frames_get_a_system_error_and_the_connection_lives(
    server, frame: bytes, binary: bool
) -> None:
    phx = await Phx.open(server)
    await phx.join("conf5")
    await phx.ws.send(frame, text=not binary)  # invalid UTF-8 in a text frame included
    system = await phx.expect("system")
    assert system[4]["status"] == "error"
    await phx.alive()
    assert server.server.node.sessions["conf5"].seq == 0


@pytest.mark.config(rate_per_second=5.0, burst=5)
async def test_a_flood_is_rate_limited_then_closed(server) -> None:
    phx = await Phx.open(server)
    await phx.join("conf6")
    for _ in range(20):
        await phx.ws.send('[null,"1","phoenix","heartbeat",{}]')
    system = await phx.expect("system")
    assert "rate_limited" in system[4]["message"]
    for _ in range(500):
        try:
            await phx.ws.send('[null,"1","phoenix","heartbeat",{}]')
        except ConnectionClosed:
            break
    with pytest.raises(ConnectionClosed) as closed:
        await phx.expect("never sent")
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


async def test_leaving_the_channel_leaves_the_session(server) -> None:
    phx, other = await Phx.open(server), await Phx.open(server)
    topic, _ = await phx.join("conf7")
    await phx.send(
        topic, "presence", {"type": "presence", "event": "track", "payload": {"user_id": "a"}}, "jconf7"
    )
    await other.join("conf7")
    ref = await phx.send(topic, "phx_leave", {}, join_ref="jconf7")
    assert (await phx.reply(ref))["status"] == "ok"
    diff = await other.expect("presence_diff")
    assert list(diff[4]["leaves"]) == ["a"]
    assert len(server.server.node.sessions["conf7"].participants) == 1


def http(
    server: Any, method: str, path: str, body: bytes | None = None, **headers: str
) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(f"{server.http}{path}", data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


async def test_get_server_time_answers_as_the_apps_edge_function(server) -> None:
    path = "/functions/v1/get-server-time"
    node = server.server.node
    for method, body in (("POST", b"{}"), ("POST", None), ("GET", None)):
        before = node.clock() * 1000.0
        status, headers, data = await asyncio.to_thread(http, server, method, path, body)
        after = node.clock() * 1000.0
        assert status == 200 and headers["Access-Control-Allow-Origin"] == "*"
        assert before <= json.loads(data)["serverTime"] <= after
    status, headers, _ = await asyncio.to_thread(
        http,
        server,
        "OPTIONS",
        path,
        None,
        Origin="https://app.example",
        **{"Access-Control-Request-Method": "POST"},
    )
    assert status == 204 and "apikey" in headers["Access-Control-Allow-Headers"]
    assert "POST" in headers["Access-Control-Allow-Methods"]
    status, _, _ = await asyncio.to_thread(http, server, "POST", path, b"x" * 70_000)
    assert status == 413
    status, headers, data = await asyncio.to_thread(http, server, "POST", "/api/sessions", b"{}")
    assert status == 405 and json.loads(data)["error"] == "method_not_allowed"
    assert headers["Allow"] == "GET, HEAD"
    status, headers, _ = await asyncio.to_thread(http, server, "PUT", path, b"{}")
    assert status == 405 and headers["Allow"] == "GET, HEAD, POST, OPTIONS"
