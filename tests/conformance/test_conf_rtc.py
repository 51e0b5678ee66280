"""docs/protocol.md, **Media and data channels** (`rtc_offer`, `rtc_candidate`, `rtc_publish`,
`rtc_close`, `rtc_answer`, `media`), with a raw WebSocket client and hostile variants.

The offers are real ones (made by aiortc in this process); everything else is plain JSON.
"""

from __future__ import annotations

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection
from rawws import Raw, session_with

LINE = "candidate:1 1 udp 2130706431 127.0.0.1 9 typ host"


async def make_offer(audio: int = 2, channel: bool = True) -> str:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        for _ in range(audio):
            pc.addTransceiver("audio", direction="sendrecv")
        if channel:
            pc.createDataChannel("state", ordered=False, maxRetransmits=0)
        await pc.setLocalDescription(await pc.createOffer())
        return str(pc.localDescription.sdp)
    finally:
        await pc.close()


async def test_an_offer_is_answered_with_loopback_candidates_only(server) -> None:
    raw, sid, _ = await session_with(server.url)
    answer = await raw.request({"type": "rtc_offer", "session": sid, "sdp": await make_offer()}, rid=1)
    assert answer["type"] == "rtc_answer" and answer["session"] == sid
    sdp = answer["sdp"]
    assert sdp.count("m=audio") == 2 and "m=application" in sdp and "opus/48000/2" in sdp
    candidates = [ln.split()[4] for ln in sdp.splitlines() if ln.startswith("a=candidate:")]
    assert candidates and all(c == "127.0.0.1" for c in candidates)


async def test_offers_that_cannot_be_used_are_refused_and_change_nothing(server) -> None:
    raw, sid, _ = await session_with(server.url)
    bad = [
        ({"sdp": "v=0\r\nthis is not sdp\r\n"}, "invalid_message"),
        ({"sdp": await make_offer(audio=1)}, "invalid_message"),  # needs both slots
        ({"sdp": "v" * 32769}, "invalid_message"),  # over the SDP bound
        ({}, "invalid_message"),  # no sdp at all
        ({"sdp": 5}, "invalid_message"),
    ]
    for rid, (fields, code) in enumerate(bad, start=10):
        reply = await raw.request({"type": "rtc_offer", "session": sid, **fields}, rid=rid)
        assert (reply["type"], reply["code"]) == ("error", code), fields
        assert reply["rid"] == rid
    # the connection and the session are as they were: a good offer is answered
    answer = await raw.request({"type": "rtc_offer", "session": sid, "sdp": await make_offer()}, rid=99)
    assert answer["type"] == "rtc_answer"


async def test_offers_need_membership_and_a_server_with_webrtc(server) -> None:
    raw = await Raw.open(server.url)
    reply = await raw.request({"type": "rtc_offer", "session": "nosuch", "sdp": await make_offer()}, rid=1)
    assert reply["code"] == "not_in_session"


@pytest.mark.config(rtc=False)
async def test_a_server_without_webrtc_says_so(server) -> None:
    raw, sid, _ = await session_with(server.url)
    for rid, msg in enumerate(
        [
            {"type": "rtc_offer", "session": sid, "sdp": await make_offer()},
            {"type": "rtc_publish", "session": sid, "slot": "voice"},
            {
                "type": "rtc_candidate",
                "session": sid,
                "candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host",
            },
        ],
        start=1,
    ):
        reply = await raw.request(msg, rid=rid)
        assert reply["code"] == "rtc_unavailable", msg


async def test_a_second_offer_at_once_is_rate_limited(server) -> None:
    raw, sid, _ = await session_with(server.url)
    offer = await make_offer()
    await raw.send({"type": "rtc_offer", "session": sid, "sdp": offer, "rid": 1})
    await raw.send({"type": "rtc_offer", "session": sid, "sdp": offer, "rid": 2})
    second = await raw.expect("error")
    assert (second["rid"], second["code"]) == (2, "rate_limited")
    assert (await raw.expect("rtc_answer"))["rid"] == 1


async def test_publishing_needs_a_peer_connection_the_lead_and_a_real_slot(server) -> None:
    raw, sid, _ = await session_with(server.url)
    reply = await raw.request({"type": "rtc_publish", "session": sid, "slot": "voice"}, rid=1)
    assert reply["code"] == "rtc_unavailable"
    reply = await raw.request({"type": "rtc_publish", "session": sid, "slot": "video"}, rid=2)
    assert reply["code"] == "invalid_message"
    ben = await Raw.open(server.url)
    joined = await ben.request({"type": "join", "session": sid, "name": "Ben"}, rid=1)
    assert joined["type"] == "joined" and joined.get("media", []) == []
    await ben.request({"type": "rtc_offer", "session": sid, "sdp": await make_offer()}, rid=2)
    reply = await ben.request({"type": "rtc_publish", "session": sid, "slot": "voice"}, rid=3)
    assert reply["code"] == "forbidden"
    # stopping what one does not publish is no error (idempotent), and tells nobody anything
    reply = await ben.request({"type": "rtc_publish", "session": sid, "slot": "voice", "live": False}, rid=4)
    assert reply == {"type": "ack", "rid": 4}


async def test_candidates_are_bounded_and_need_a_peer(server) -> None:
    raw, sid, _ = await session_with(server.url)
    line = LINE
    reply = await raw.request({"type": "rtc_candidate", "session": sid, "candidate": line}, rid=1)
    assert reply["code"] == "rtc_unavailable"
    reply = await raw.request({"type": "rtc_candidate", "session": sid, "candidate": "x" * 1025}, rid=2)
    assert reply["code"] == "invalid_message"
    await raw.request({"type": "rtc_offer", "session": sid, "sdp": await make_offer()}, rid=3)
    for rid in range(4, 4 + 40):  # more than the server will use: all accepted, extras ignored
        msg = {"type": "rtc_candidate", "session": sid, "candidate": line, "sdpMLineIndex": 0}
        assert await raw.request(msg, rid=rid) == {"type": "ack", "rid": rid}


@pytest.mark.config(rtc=False)
async def test_rtc_close_is_idempotent(server) -> None:
    raw, sid, _ = await session_with(server.url)
    for rid in (1, 2):  # nothing to close (and no WebRTC at all): still acked
        assert await raw.request({"type": "rtc_close", "session": sid}, rid=rid) == {
            "type": "ack",
            "rid": rid,
        }


async def test_rtc_close_closes_and_can_be_repeated(server) -> None:
    raw, sid, _ = await session_with(server.url)
    assert (await raw.request({"type": "rtc_offer", "session": sid, "sdp": await make_offer()}, rid=1))[
        "type"
    ] == "rtc_answer"
    for rid in (2, 3):
        assert await raw.request({"type": "rtc_close", "session": sid}, rid=rid) == {
            "type": "ack",
            "rid": rid,
        }
    reply = await raw.request({"type": "rtc_publish", "session": sid, "slot": "voice"}, rid=4)
    assert reply["code"] == "rtc_unavailable"  # closed: publishing needs a new offer


@pytest.mark.config(rtc_max_peers=1)
async def test_past_the_peer_limit_an_offer_gets_rtc_unavailable(server) -> None:
    raw, sid, _ = await session_with(server.url)
    assert (await raw.request({"type": "rtc_offer", "session": sid, "sdp": await make_offer()}, rid=1))[
        "type"
    ] == "rtc_answer"
    ben = await Raw.open(server.url)
    await ben.request({"type": "join", "session": sid, "name": "Ben"}, rid=1)
    reply = await ben.request({"type": "rtc_offer", "session": sid, "sdp": await make_offer()}, rid=2)
    assert reply["code"] == "rtc_unavailable"  # the one peer connection is taken: stay on the WebSocket
    await raw.request({"type": "rtc_close", "session": sid}, rid=2)  # frees it
    reply = await ben.request({"type": "rtc_offer", "session": sid, "sdp": await make_offer()}, rid=3)
    assert reply["type"] == "rtc_answer"
