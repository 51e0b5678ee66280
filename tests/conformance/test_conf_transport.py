"""docs/protocol.md, **Transport**, **Frames** and **Conventions**, as a third-party client sees them.

The table mapping each doc statement to its test is in tests/conformance/README.md.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

import pytest
from confwire import CLOSE, CONTINUATION, PING, TEXT, TcpWs, barrier, member, snapshot, take
from confwire import frame as ws_frame
from rawws import Raw, session_with

MAX_MESSAGE = 64 * 1024
MAX_SAFE = 2**53 - 1
CAMEL = re.compile(r"^[a-z][A-Za-z0-9]*$")


async def assert_alive_and_unchanged(raw: Raw, url: str, sid: str, before: dict[str, Any]) -> None:
    """The connection still answers requests and the session is as it was (`before` = a snapshot)."""
    reply = await raw.request({"type": "join", "session": sid, "name": "again"}, rid=77_777)
    assert reply["code"] == "already_joined"
    after = await snapshot(url, sid)
    assert after["state"] == before["state"]
    assert after["seq"] == before["seq"]
    assert after["settings"] == before["settings"]
    assert [(p["id"], p["role"], p.get("meta")) for p in after["participants"] if p["name"] != "Probe"] == [
        (p["id"], p["role"], p.get("meta")) for p in before["participants"] if p["name"] != "Probe"
    ]


# --- transport ------------------------------------------------------------------------------


async def test_welcome_is_the_first_frame_with_the_documented_limits(server) -> None:
    ws = await TcpWs.open(server.port)
    first = await ws.data_frame()
    (welcome,) = first.messages()
    assert welcome["type"] == "welcome"
    assert isinstance(welcome["server"], str) and welcome["server"]
    assert isinstance(welcome["conn"], str) and welcome["conn"]
    assert isinstance(welcome["time"], float)
    assert welcome["limits"] == {
        "maxMessageBytes": 65536,
        "ratePerSecond": 200,
        "burst": 400,
        "maxSessions": 8,
    }
    ws.close()


async def test_server_frames_are_text_frames(server) -> None:
    ws = await TcpWs.open(server.port)
    await ws.send_json({"type": "create", "name": "A", "rid": 1}, {"type": "time", "t0": 1.0})
    await ws.send(TEXT, b"nonsense")
    seen: list[str] = []
    while "malformed" not in seen:
        f = await ws.data_frame()
        assert f.opcode == TEXT, f
        seen += [m.get("code", m["type"]) for m in f.messages()]
    assert {"welcome", "joined", "time"} <= set(seen)
    ws.close()


async def test_binary_frame_is_accepted(server) -> None:
    raw = await Raw.open(server.url)
    await raw.send(json.dumps({"type": "create", "name": "Bin", "rid": 3}).encode(), text=False)
    joined = await raw.expect("joined", rid=3)
    assert joined["participants"][0]["name"] == "Bin"


async def test_fragmented_message_is_reassembled(server) -> None:
    ws = await TcpWs.open(server.port)
    await ws.data_frame()  # welcome
    data = json.dumps({"type": "create", "name": "Frag", "rid": 4}).encode()
    await ws.send(TEXT, data[:5], fin=False)
    await ws.send(CONTINUATION, data[5:12], fin=False)
    await ws.send(CONTINUATION, data[12:], fin=True)
    (joined,) = (await ws.data_frame()).messages()
    assert (joined["type"], joined["rid"], joined["participants"][0]["name"]) == ("joined", 4, "Frag")
    ws.close()


async def test_bare_continuation_frame_closes_1002(server) -> None:
    ws = await TcpWs.open(server.port)
    await ws.data_frame()
    await ws.send(CONTINUATION, b'{"type":"time","t0":1}', fin=True)
    assert (await ws.close_frame()).close_code == 1002
    ws.close()


async def test_new_message_inside_a_fragmented_one_closes_1002(server) -> None:
    ws = await TcpWs.open(server.port)
    await ws.data_frame()
    await ws.send(TEXT, b'{"type":"ti', fin=False)
    await ws.send(TEXT, b'{"type":"time","t0":1}', fin=True)
    assert (await ws.close_frame()).close_code == 1002
    ws.close()


async def test_replies_of_one_turn_share_one_frame_in_send_order(server) -> None:
    _raw, sid, _ = await session_with(server.url)
    ws = await TcpWs.open(server.port)
    await ws.data_frame()
    await ws.send_json(
        {"type": "join", "session": sid, "name": "One", "rid": 1},
        {"type": "control", "session": sid, "event": "e", "rid": 2},  # not the leader: error
        {"type": "meta", "session": sid, "meta": {"n": 1}, "rid": 3},
        {"type": "leave", "session": sid, "rid": 4},
    )
    f = await ws.data_frame()
    assert f.payload.startswith(b"["), "several messages of one turn must share one frame"
    replies = [(m["type"], m.get("rid")) for m in f.messages() if "rid" in m]
    assert replies == [("joined", 1), ("error", 2), ("ack", 3), ("left", 4)]
    ws.close()


async def test_field_names_are_camel_case(server) -> None:
    raw, sid, _me = await session_with(server.url)
    other, joined = await member(server.url, sid)
    at = joined["participants"][0]["joinedAt"]
    requests: list[dict[str, Any]] = [
        {"type": "state_set", "session": sid, "at": at + 0.001, "set": {"geometry.a": 1}},
        {"type": "control", "session": sid, "event": "e", "payload": {"x": 1}},
        {"type": "handover", "session": sid, "to": joined["you"]},
        {"type": "meta", "session": sid, "meta": {"k": 1}},
        {"type": "leave", "session": sid},
        {"type": "leave", "session": sid},  # error: not in the session any more
    ]
    for rid, request in enumerate(requests, start=2):
        await raw.send({**request, "rid": rid})
    await raw.send({"type": "time", "t0": 1.0})
    seen = [raw.welcome, joined, *await barrier(raw), *await barrier(other)]
    kinds = set()

    def check(obj: dict[str, Any], where: str) -> None:
        for key in obj:
            assert CAMEL.match(key) or key == "from", f"{where}: {key!r}"

    for msg in seen:
        kinds.add(msg["type"])
        check(msg, msg["type"])
        for p in msg.get("participants", []) + msg.get("joins", []) + msg.get("updates", []):
            check(p, "ParticipantInfo")
        for nested in ("limits", "settings"):
            if isinstance(msg.get(nested), dict):
                check(msg[nested], nested)
    assert {
        "welcome",
        "joined",
        "presence",
        "leader",
        "control",
        "state",
        "ack",
        "left",
        "error",
        "time",
    } <= kinds


async def test_optional_fields_with_default_values_are_omitted(server) -> None:
    raw = await Raw.open(server.url)
    await raw.send({"type": "create", "name": "Lea"})
    joined = await raw.expect("joined")
    assert "rid" not in joined
    assert set(joined["settings"]) == {"sessionId"}, "public=false and playoutDelay=0.15 are defaults"
    (me,) = joined["participants"]
    assert "meta" not in me and "connected" not in me
    sid = joined["session"]
    other, _ = await member(server.url, sid)
    presence = await raw.expect("presence")
    assert set(presence) == {"type", "session", "joins"}
    assert "meta" not in presence["joins"][0] and "connected" not in presence["joins"][0]
    ack = await raw.request({"type": "meta", "session": sid, "meta": {}}, rid=2)
    assert ack == {"type": "ack", "rid": 2}
    await raw.send({"type": "control", "session": sid, "event": "e"})
    control = await raw.expect("control")
    assert "payload" not in control
    await raw.send({"type": "state_set", "session": sid, "at": control["at"], "set": {"geometry.a": 1}})
    state = await raw.expect("state")
    assert "coalesced" not in state
    await raw.send({"type": "nope"})
    error = await raw.error()
    assert "rid" not in error and "session" not in error
    await other.request({"type": "leave", "session": sid}, rid=3)
    observer, _ = await member(server.url, sid, "Obs", "observer")
    await raw.request({"type": "leave", "session": sid}, rid=4)
    vacant = await observer.expect("leader")
    assert (vacant["leader"], vacant["reason"], vacant["previous"]) == (None, "vacant", me["id"])
    await member(server.url, sid, "Claire")
    leader = await observer.expect("leader")
    assert leader["reason"] == "claimed"
    assert "previous" not in leader


async def test_unknown_fields_are_ignored(server) -> None:
    raw = await Raw.open(server.url)
    joined = await raw.request({"type": "create", "name": "U", "colour": "red", "settings": {"x": 1}}, rid=1)
    assert joined["type"] == "joined", joined
    sid = joined["session"]
    ack = await raw.request({"type": "control", "session": sid, "event": "e", "extra": [1, 2]}, rid=2)
    assert ack["type"] == "ack" and ack["seq"] == 1
    await raw.send({"type": "time", "t0": 5.0, "whatever": True})
    assert (await raw.recv())["type"] == "time"


# --- frames ---------------------------------------------------------------------------------


def control_frame(sid: str, size: int, rid: int) -> str:
    """A valid `control` frame of exactly `size` bytes."""
    base = f'{{"type":"control","session":"{sid}","event":"e","payload":"","rid":{rid}}}'
    frame = base.replace('"payload":""', '"payload":"' + "x" * (size - len(base)) + '"')
    assert len(frame.encode()) == size
    return frame


async def test_message_over_the_limit_is_too_large(server) -> None:
    raw, sid, _ = await session_with(server.url)
    before = await snapshot(server.url, sid)
    await raw.send(control_frame(sid, MAX_MESSAGE + 1, 5))
    assert (await raw.error())["code"] == "too_large"
    await assert_alive_and_unchanged(raw, server.url, sid, before)
    await raw.send(control_frame(sid, MAX_MESSAGE, 6))
    assert (await raw.expect("ack", rid=6))["seq"] == 1


async def test_fragmented_message_over_the_limit_is_too_large(server) -> None:
    raw, sid, _ = await session_with(server.url)
    before = await snapshot(server.url, sid)
    ws = await TcpWs.open(server.port)
    await ws.data_frame()
    await ws.send_json({"type": "join", "session": sid, "name": "Frag", "role": "observer", "rid": 1})
    assert (await ws.data_frame()).messages()[0]["type"] == "joined"
    data = control_frame(sid, MAX_MESSAGE + 100, 2).encode()
    half = len(data) // 2
    await ws.send(TEXT, data[:half], fin=False)
    await ws.send(CONTINUATION, data[half:], fin=True)
    (error,) = (await ws.data_frame()).messages()
    assert error["code"] == "too_large"
    await ws.send_json({"type": "time", "t0": 2.0})  # still open and serving
    (reply,) = (await ws.data_frame()).messages()
    assert reply["type"] == "time"
    ws.close()
    before["participants"] = (await snapshot(server.url, sid))["participants"]  # the observer left
    await assert_alive_and_unchanged(raw, server.url, sid, before)


async def test_frame_header_over_one_mebibyte_closes_1009_unread(server) -> None:
    ws = await TcpWs.open(server.port)
    await ws.data_frame()
    ws.send_raw(ws_frame(TEXT, b"", length=(1 << 20) + 1))  # the header alone: no payload follows
    await ws.writer.drain()
    assert (await ws.close_frame()).close_code == 1009
    ws.close()


async def test_one_mebibyte_frame_is_only_too_large(server) -> None:
    raw, sid, _ = await session_with(server.url)
    await raw.send(control_frame(sid, 1 << 20, 5))
    assert (await raw.error())["code"] == "too_large"
    await raw.send({"type": "time", "t0": 1.0})
    assert (await raw.recv())["type"] == "time"


BAD_UTF8 = {
    "invalid-start": b"\xff\xfe",
    "bad-continuation": b"\xc3\x28",
    "encoded-surrogate": b"\xed\xa0\x80",
    "overlong-slash": b"\xc0\xaf",
    "overlong-3byte": b"\xe0\x80\xaf",
    "truncated": b"\xe2\x82",
}


@pytest.mark.parametrize("text", [True, False], ids=["text", "binary"])
@pytest.mark.parametrize("bad", BAD_UTF8.values(), ids=BAD_UTF8.keys())
async def test_invalid_utf8_anywhere_is_malformed(server, bad: bytes, text: bool) -> None:
    raw, sid, _ = await session_with(server.url)
    before = await snapshot(server.url, sid)
    s = sid.encode()
    for data in (
        b'{"type":"meta","session":"' + s + b'","meta":{"n":"' + bad + b'"},"rid":5}',  # known field
        b'{"type":"meta","session":"' + s + b'","meta":{},"ignored":"' + bad + b'","rid":5}',
        b'{"type":"time","t0":1,"x":"' + bad + b'"}',  # a message that would otherwise be served
    ):
        await raw.send(data, text=text)
        err = await raw.error()
        assert err["code"] == "malformed", (data, err)
    await assert_alive_and_unchanged(raw, server.url, sid, before)


async def test_lone_surrogate_escape_is_malformed_and_a_pair_is_accepted(server) -> None:
    raw, sid, _ = await session_with(server.url)
    before = await snapshot(server.url, sid)
    for lone in ("\\ud800", "\\udc00", "a\\ud83d"):
        await raw.send(f'{{"type":"meta","session":"{sid}","meta":{{"n":"{lone}"}},"rid":2}}')
        assert (await raw.error())["code"] == "malformed", lone
    await assert_alive_and_unchanged(raw, server.url, sid, before)
    await raw.send(f'{{"type":"meta","session":"{sid}","meta":{{"n":"\\ud83d\\ude00"}},"rid":3}}')
    await raw.expect("ack", rid=3)
    (me,) = (await snapshot(server.url, sid))["participants"][:1]
    assert me["meta"] == {"n": "\U0001f600"}


def nested(levels: int, inner: str = "1", opener: str = "[") -> str:
    closer = "]" if opener == "[" else "}"
    if opener == "{":
        return '{"k":' * levels + inner + closer * levels
    return opener * levels + inner + closer * levels


async def test_nesting_depth_limit(server) -> None:
    raw, sid, _ = await session_with(server.url)
    # The message object is level 1 and `payload`'s value level 2: 31 more levels make 32.
    for opener in ("[", "{"):
        head = f'{{"type":"control","session":"{sid}","event":"e"'
        ok = f'{head},"payload":{nested(31, opener=opener)},"rid":2}}'
        await raw.send(ok)
        await raw.expect("ack", rid=2)
    before = await snapshot(server.url, sid)
    for opener in ("[", "{"):
        head = f'{{"type":"control","session":"{sid}","event":"e"'
        deep = f'{head},"payload":{nested(32, opener=opener)},"rid":3}}'
        await raw.send(deep)
        assert (await raw.error())["code"] == "malformed", opener
    deep_meta = f'{{"type":"meta","session":"{sid}","meta":{nested(32, opener="{")},"rid":4}}'
    await raw.send(deep_meta)
    assert (await raw.error())["code"] == "malformed"
    await assert_alive_and_unchanged(raw, server.url, sid, before)
    brackets = "[{" * 100
    await raw.send(f'{{"type":"control","session":"{sid}","event":"e","payload":"{brackets}","rid":5}}')
    assert (await raw.expect("ack", rid=5))["seq"] == before["seq"] + 1


@pytest.mark.parametrize(
    "data",
    [
        "not json",
        '{"type":"time","t0":1',
        "[]",
        '[{"type":"time","t0":1}]',
        '"time"',
        "42",
        "null",
        '{"type":"time","t0":NaN}',
        '{"type":"time","t0":Infinity}',
        '{"type":"time","t0":-Infinity}',
        "",
    ],
)
async def test_not_a_json_object_is_malformed(server, data: str) -> None:
    raw, sid, _ = await session_with(server.url)
    before = await snapshot(server.url, sid)
    await raw.send(data)
    assert (await raw.error())["code"] == "malformed"
    await assert_alive_and_unchanged(raw, server.url, sid, before)


@pytest.mark.parametrize("where", ["payload", "meta", "state", "t0", "at"])
async def test_number_beyond_double_range_is_invalid_message(server, where: str) -> None:
    raw, sid, _ = await session_with(server.url)
    before = await snapshot(server.url, sid)
    frames = {
        "payload": f'{{"type":"control","session":"{sid}","event":"e","payload":{{"x":1e999}},"rid":2}}',
        "meta": f'{{"type":"meta","session":"{sid}","meta":{{"x":-1e999}},"rid":2}}',
        "state": f'{{"type":"state_set","session":"{sid}","at":{time.time()},"set":{{"geometry.x":1e999}}}}',
        "t0": '{"type":"time","t0":1e999,"rid":2}',
        "at": f'{{"type":"control","session":"{sid}","event":"e","at":1e999,"rid":2}}',
    }
    await raw.send(frames[where])
    assert (await raw.error())["code"] == "invalid_message"
    await assert_alive_and_unchanged(raw, server.url, sid, before)


@pytest.mark.parametrize("literal", ["9007199254740992", "-9007199254740992", "1" + "0" * 40])
@pytest.mark.parametrize("where", ["meta", "payload", "state"])
async def test_unsafe_integers_are_invalid_message(server, where: str, literal: str) -> None:
    raw, sid, _ = await session_with(server.url)
    before = await snapshot(server.url, sid)
    at = time.time()

    def frame(value: str) -> str:
        ctl = f'"type":"control","session":"{sid}","event":"e","rid":2'
        st = f'"type":"state_set","session":"{sid}","rid":2,"at":{at}'
        return {
            "meta": f'{{"type":"meta","session":"{sid}","meta":{{"n":[{value}]}},"rid":2}}',
            "payload": f'{{{ctl},"payload":{{"n":{value}}}}}',
            "state": f'{{{st},"set":{{"geometry.n":{value}}}}}',
        }[where]

    await raw.send(frame(literal))
    err = await raw.error()
    assert (err["code"], err.get("rid")) == ("invalid_message", 2)
    await assert_alive_and_unchanged(raw, server.url, sid, before)
    for safe in (str(MAX_SAFE), str(-MAX_SAFE)):
        await raw.send(frame(safe))
        assert (await raw.expect("ack", rid=2))["rid"] == 2


async def test_duplicate_keys_last_one_wins(server) -> None:
    raw = await Raw.open(server.url)
    await raw.send('{"type":"create","name":"First","name":"Last","meta":{"k":1,"k":2},"rid":1,"rid":9}')
    joined = await raw.expect("joined")
    assert joined["rid"] == 9
    (me,) = joined["participants"]
    assert (me["name"], me["meta"]) == ("Last", {"k": 2})


async def test_negative_zero_is_a_number(server) -> None:
    raw, sid, _ = await session_with(server.url)
    at = time.time()
    await raw.send(f'{{"type":"state_set","session":"{sid}","at":{at},"set":{{"geometry.z":-0.0}},"rid":2}}')
    await take(raw, "ack", rid=2)
    state = await take(raw, "state")
    assert state["set"] == {"geometry.z": 0}
    assert isinstance(state["set"]["geometry.z"], (int, float))
    await raw.send('{"type":"time","t0":-0.0}')
    assert (await raw.expect("time"))["t0"] == 0


# --- conventions ----------------------------------------------------------------------------


async def test_rid_is_echoed_by_every_reply(server) -> None:
    raw = await Raw.open(server.url)
    joined = await raw.request({"type": "create", "name": "R"}, rid=11)
    assert joined["type"] == "joined"
    sid = joined["session"]
    other = await Raw.open(server.url)
    j2 = await other.request({"type": "join", "session": sid, "name": "S"}, rid=12)
    assert (j2["type"], j2["rid"]) == ("joined", 12)
    ack = await raw.request({"type": "meta", "session": sid, "meta": {}}, rid=13)
    assert (ack["type"], ack["rid"]) == ("ack", 13)
    ack = await raw.request({"type": "control", "session": sid, "event": "e"}, rid=14)
    assert (ack["type"], ack["rid"], ack["seq"]) == ("ack", 14, 1)
    ack = await raw.request(
        {"type": "state_set", "session": sid, "at": time.time(), "set": {"geometry.a": 1}}, 15
    )
    assert (ack["type"], ack["rid"]) == ("ack", 15)
    ack = await raw.request({"type": "handover", "session": sid, "to": j2["you"]}, rid=16)
    assert (ack["type"], ack["rid"]) == ("ack", 16)
    err = await raw.request({"type": "control", "session": sid, "event": "e"}, rid=17)
    assert (err["type"], err["rid"], err["code"], err["session"]) == ("error", 17, "not_leader", sid)
    left = await raw.request({"type": "leave", "session": sid}, rid=18)
    assert (left["type"], left["rid"], left["session"]) == ("left", 18, sid)


async def test_without_rid_success_is_silent_but_errors_are_sent(server) -> None:
    raw, sid, _ = await session_with(server.url)
    await raw.send({"type": "meta", "session": sid, "meta": {"a": 1}})
    await raw.send({"type": "control", "session": sid, "event": "e"})
    await raw.send({"type": "state_set", "session": sid, "at": time.time(), "set": {"geometry.a": 1}})
    await raw.send({"type": "leave", "session": "not-mine"})
    seen = await barrier(raw)
    assert [m["type"] for m in seen] == ["presence", "control", "state", "error"]
    assert seen[-1]["code"] == "not_in_session" and "rid" not in seen[-1]


@pytest.mark.parametrize("rid", [-1, 2**53, 1.5, "1", True])
async def test_rid_range(server, rid: object) -> None:
    raw, sid, _ = await session_with(server.url)
    before = await snapshot(server.url, sid)
    await raw.send({"type": "control", "session": sid, "event": "e", "rid": rid})
    assert (await raw.error())["code"] == "invalid_message"
    await assert_alive_and_unchanged(raw, server.url, sid, before)
    ack = await raw.request({"type": "control", "session": sid, "event": "e"}, rid=MAX_SAFE)
    assert (ack["type"], ack["rid"]) == ("ack", MAX_SAFE)
    ack = await raw.request({"type": "control", "session": sid, "event": "e"}, rid=0)
    assert (ack["type"], ack["rid"]) == ("ack", 0)


async def test_generated_ids_have_the_documented_shape(server) -> None:
    for _ in range(5):
        _raw, sid, me = await session_with(server.url)
        assert re.fullmatch(r"[A-Za-z0-9_-]{8}", sid), sid
        assert re.fullmatch(r"p[0-9a-f]{8}", me), me
        _, joined = await member(server.url, sid)
        assert re.fullmatch(r"p[0-9a-f]{8}", joined["you"])


@pytest.mark.parametrize(
    ("sid", "ok"),
    [
        ("abc", True),
        ("A" * 64, True),
        ("a_b-C9", True),
        ("ab", False),
        ("A" * 65, False),
        ("a b", False),
        ("a.b", False),
    ],
)
async def test_session_id_pattern(server, sid: str, ok: bool) -> None:
    raw = await Raw.open(server.url)
    reply = await raw.request({"type": "create", "name": "S", "settings": {"sessionId": sid}}, rid=1)
    if ok:
        assert (reply["type"], reply["session"]) == ("joined", sid)
    else:
        assert reply["code"] == "invalid_message"
        assert (await raw.request({"type": "join", "session": sid, "name": "x"}, rid=2))[
            "code"
        ] == "invalid_message"


async def test_network_time_is_epoch_seconds_and_does_not_go_back(server) -> None:
    raw, sid, _ = await session_with(server.url)
    assert abs(raw.welcome["time"] - time.time()) < 5  # epoch seconds (same host clock here)
    stamps: list[float] = [raw.welcome["time"]]
    for i in range(20):
        await raw.send({"type": "time", "t0": float(i)})
        reply = await raw.expect("time", t0=float(i))
        assert reply["t1"] <= reply["t2"]
        stamps += [reply["t1"], reply["t2"]]
        await raw.send({"type": "control", "session": sid, "event": "e", "rid": 100 + i})
        ctl = await take(raw, "ack", rid=100 + i)
        stamps.append((await take(raw, "control", seq=ctl["seq"]))["at"])
    assert stamps == sorted(stamps)


# --- connection timers ----------------------------------------------------------------------


async def test_idle_connection_is_pinged_and_closed_without_pong(server) -> None:
    answering = await Raw.open(server.url)  # `websockets` answers pings by itself
    silent = await TcpWs.open(server.port)
    start = time.monotonic()
    await silent.data_frame()  # welcome
    ping = await silent.read_frame(timeout=20)
    pinged = time.monotonic() - start
    assert ping.opcode == PING
    assert 14 <= pinged <= 17, pinged
    await _until_closed(silent)  # no pong: the server ends the connection 10 s after its ping
    closed = time.monotonic() - start - pinged
    assert 9 <= closed <= 12.5, closed
    await answering.send({"type": "time", "t0": 1.0})
    assert (await answering.recv())["type"] == "time"


async def _until_closed(ws: TcpWs) -> None:
    """Read until the server closes (a close frame and FIN, or just the end of the stream)."""
    try:
        while (await ws.read_frame(timeout=15)).opcode != CLOSE:
            pass
        await ws.eof(5)
    except (asyncio.IncompleteReadError, ConnectionError):
        pass


async def _dropped_after(port: int, data: bytes) -> float:
    ws = await TcpWs.connect(port)
    start = time.monotonic()
    ws.send_raw(data)
    await ws.eof(timeout=7)
    return time.monotonic() - start


async def test_incomplete_upgrade_request_is_dropped_after_5_s(server) -> None:
    elapsed = await _dropped_after(server.port, b"GET /ws HTTP/1.1\r\nHost: x\r\n")
    assert 4 <= elapsed <= 6.5, elapsed


async def test_silent_connection_is_dropped_after_5_s(server) -> None:
    elapsed = await _dropped_after(server.port, b"")
    assert 4 <= elapsed <= 6.5, elapsed


async def test_upgrade_request_head_limit(server) -> None:
    small = await TcpWs.open(server.port, extra="X-Pad: " + "a" * 15_000 + "\r\n")
    assert small.response_head.startswith(b"HTTP/1.1 101")
    small.close()
    big = await TcpWs.connect(server.port)
    try:
        await big.upgrade("X-Pad: " + "a" * 17_000 + "\r\n")
        assert not big.response_head.startswith(b"HTTP/1.1 101"), big.response_head
    except (asyncio.IncompleteReadError, ConnectionError):
        pass  # refused by closing the connection
    big.close()
