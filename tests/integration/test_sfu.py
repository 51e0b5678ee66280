"""The SFU over real sockets and real aiortc peer connections, loopback only.

Forwarding is checked with the publisher and listener in their own processes (tests/rtcpeer.py)
so that every Opus encoder and decoder in *this* process is the server's: there must be none.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiortc.codecs.opus
import aiortc.rtcrtpreceiver
import aiortc.rtcrtpsender
import pytest
from rtcpeer import Tone
from support import make_config

from collective_sync.client import Client, ServerError
from collective_sync.client.rtc import RtcLink
from collective_sync.netem import Impairment, ImpairProxy
from collective_sync.protocol.messages import Media, RtcPublish
from collective_sync.server.app import start

PEER = Path(__file__).resolve().parent.parent / "rtcpeer.py"


def count_calls(monkeypatch: pytest.MonkeyPatch, calls: Counter[str], owner: Any, name: str) -> None:
    original = getattr(owner, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[f"{getattr(owner, '__name__', owner)}.{name}"] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, counted)


async def peer(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, str(PEER), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )


async def first_json(proc: asyncio.subprocess.Process, timeout: float) -> dict[str, Any]:
    assert proc.stdout is not None
    async with asyncio.timeout(timeout):
        line = await proc.stdout.readline()
    if not line:
        _, err = await proc.communicate()
        raise AssertionError(f"peer process failed: {err.decode()[-2000:]}")
    return json.loads(line)  # type: ignore[no-any-return]


@pytest.mark.timeout(120)
async def test_opus_is_forwarded_to_listeners_with_no_codec_in_the_server(server, monkeypatch) -> None:
    calls: Counter[str] = Counter()
    for owner, name in (
        (aiortc.codecs.opus.OpusEncoder, "__init__"),
        (aiortc.codecs.opus.OpusEncoder, "encode"),
        (aiortc.codecs.opus.OpusEncoder, "pack"),
        (aiortc.codecs.opus.OpusDecoder, "__init__"),
        (aiortc.codecs.opus.OpusDecoder, "decode"),
        (aiortc.rtcrtpreceiver, "get_decoder"),
        (aiortc.rtcrtpsender, "get_encoder"),
    ):
        count_calls(monkeypatch, calls, owner, name)
    publisher = await peer("publish", server.url, "--slot", "voice", "--freq", "440", "--seconds", "60")
    listeners: list[asyncio.subprocess.Process] = []
    try:
        sid = (await first_json(publisher, 30))["session"]
        listeners = [
            # `--`: a session id may begin with "-" (base64url), which argparse would take for an option.
            await peer("listen", "--slot", "voice", "--seconds", "2", "--", server.url, sid)
            for _ in range(2)
        ]
        heard = [await first_json(p, 60) for p in listeners]
    finally:
        for p in [publisher, *listeners]:
            if p.returncode is None:
                p.kill()
            await p.wait()
    for h in heard:
        assert abs(h["peak_hz"] - 440.0) < 5.0, h
    hub = server.server.node.media
    assert hub.stats.packets_out >= 2 * 100  # 2 s+ of 20 ms packets to each listener
    assert sum(calls.values()) == 0, calls
    # the counting itself works: a decoder made in this process is seen
    aiortc.rtcrtpreceiver.get_decoder(aiortc.RTCRtpCodecParameters("audio/opus", 48000, 2))
    assert calls["aiortc.rtcrtpreceiver.get_decoder"] == 1


async def wait_listening(session: Any, *pids: str) -> None:
    await session.wait_for(lambda s: all(s.participants[p].listening for p in pids))


@pytest.mark.timeout(90)
async def test_only_the_leader_or_a_facilitator_goes_live_and_loses_the_slot_with_the_lead(
    server, connect
) -> None:
    lea, ben = await connect(), await connect()
    s = await lea.create("Lea")
    b = await ben.join(s.id, "Ben")
    with pytest.raises(ServerError) as err:
        await s.client.request(RtcPublish(session=s.id, slot="voice"))
    assert err.value.code == "rtc_unavailable"  # no peer connection yet
    ls, lb = await RtcLink.open(s), await RtcLink.open(b)
    try:
        await wait_listening(b, s.me, b.me)  # presence shows who hears the streams
        with pytest.raises(ServerError) as err:
            await lb.publish("voice", Tone(330.0))
        assert err.value.code == "forbidden"
        await ls.publish("engine", Tone(660.0))
        await b.wait_for(lambda x: "engine" in x.media and x.participants[s.me].live == ["engine"])
        assert b.media["engine"].publisher == s.me
        await b.wait_for(lambda x: x.media["engine"].at is not None)  # the clock map came
        frame = await asyncio.wait_for(lb.track("engine").recv(), 10)
        assert frame.sample_rate == 48000
        with pytest.raises(ServerError) as err:
            await lb.publish("engine", Tone(330.0))
        assert err.value.code == "forbidden"
        await s.handover(b.me)  # the slot goes with the lead
        await b.wait_for(lambda x: "engine" not in x.media and x.participants[s.me].live == [])
        await lb.publish("engine", Tone(330.0))
        await s.wait_for(lambda x: x.media.get("engine") is not None and x.media["engine"].publisher == b.me)
        with pytest.raises(ServerError) as err:
            await ls.publish("engine", Tone(220.0))
        assert err.value.code == "forbidden"
        hub = server.server.node.media
        await b.leave()  # leaving ends its peer connection, and its slot
        await s.wait_for(lambda x: not x.media and b.me not in x.participants)
        assert not hub.has_peer(s.id, b.me)
    finally:
        await ls.close()
        await lb.close()


@pytest.mark.timeout(60)
async def test_state_goes_over_the_data_channel_and_the_websocket_repairs_it(server, connect) -> None:
    lea, ben = await connect(), await connect()
    s = await lea.create("Lea")
    b = await ben.join(s.id, "Ben")
    lb = await RtcLink.open(b)
    caught_up = asyncio.Event()
    b.on_apply(lambda _: caught_up.set() if b.applied.get(f"participants.{s.me}.n") == 49 else None)
    try:
        for i in range(50):
            await s.set({"geometry.torus.R": i / 50, f"participants.{s.me}.n": i})
        await b.wait_for(lambda x: x.values.get(f"participants.{s.me}.n") == 49)
        assert b.values["geometry.torus.R"] == pytest.approx(49 / 50)
        assert lb.state_received > 0  # it came over the data channel ...
        node = server.server.node
        await b.wait_for(lambda x: x.version == s.version)
        assert node.media.stats.state_sent >= lb.state_received
        # ... and the WebSocket's coalesced copy, which came too, did not take anything back
        assert b.values == s.values
        await asyncio.wait_for(caught_up.wait(), 5)  # through the jitter buffer, at its time
        assert b.applied == s.values
    finally:
        await lb.close()


async def test_media_message_shape(server, connect) -> None:
    lea = await connect()
    s = await lea.create("Lea")
    ls = await RtcLink.open(s)
    try:
        await ls.publish("voice", Tone(440.0))
        ev = await s.next_event(Media, timeout=10)
        assert ev.slots[0].slot == "voice" and ev.slots[0].publisher == s.me
    finally:
        await ls.close()


def through(proxy_port: int) -> tuple[Callable[[str], str], list[int]]:
    """An answer rewriter: the client is sent to the proxy's port for every server candidate;
    returns it and the list that receives the server's real port."""
    real: list[int] = []

    def rewrite(sdp: str) -> str:
        lines = []
        for line in sdp.splitlines():
            if line.startswith("a=candidate:"):
                bits = line.split()
                real.append(int(bits[5]))
                bits[5] = str(proxy_port)
                line = " ".join(bits)
            lines.append(line)
        return "\r\n".join(lines) + "\r\n"

    return rewrite, real


@pytest.mark.timeout(90)
async def test_state_lost_on_the_data_channel_is_repaired_by_the_websocket(server, connect) -> None:
    """The listener's UDP goes through the impairment proxy, losing 25 % of what the server sends
    it: the data channel never retransmits, so the WebSocket's coalesced copy must fill the gaps."""
    lea, ben = await connect(), await connect()
    s = await lea.create("Lea")
    b = await ben.join(s.id, "Ben")
    proxy = ImpairProxy("127.0.0.1", 0, down=Impairment(loss=0.25), seed=7)
    port = await proxy.start_udp()
    rewrite, real = through(port)

    def route(sdp: str) -> str:
        out = rewrite(sdp)
        proxy.target_port = real[0]  # the server's one loopback candidate
        return out

    link = await RtcLink.open(b, timeout=30, via=route)
    try:
        done = asyncio.Event()
        b.on_apply(lambda _: done.set() if b.applied.get("geometry.torus.R") == 199 else None)
        for i in range(200):
            await s.set({"geometry.torus.R": i, f"participants.{s.me}.k{i % 20}": i})
            if i % 20 == 19:
                await s.wait_for(lambda x, i=i: x.values.get("geometry.torus.R") == i)  # paced
        await asyncio.wait_for(done.wait(), 15)
        await b.wait_for(lambda x: x.values == s.values, timeout=10)
        assert 0 < link.state_received < 200  # some came over the channel, some were lost there
        assert b.applied == s.values
    finally:
        await link.close()
        await proxy.close()


@pytest.mark.timeout(60)
async def test_a_publisher_whose_peer_connection_ends_is_no_longer_live(server, connect) -> None:
    lea, ben = await connect(), await connect()
    s = await lea.create("Lea")
    b = await ben.join(s.id, "Ben")
    ls = await RtcLink.open(s)
    try:
        await ls.publish("voice", Tone(440.0))
        await b.wait_for(lambda x: "voice" in x.media and x.participants[s.me].listening)
    finally:
        await ls.close()  # rtc_close: its slot stops, nobody is left waiting for it
    await b.wait_for(lambda x: not x.media and x.participants[s.me].live == [])
    assert not b.participants[s.me].listening
    again = await RtcLink.open(s)  # and it can come back and go live again
    try:
        await again.publish("voice", Tone(440.0))
        await b.wait_for(lambda x: "voice" in x.media)
    finally:
        await again.close()


async def test_a_packet_libsrtp_refuses_is_skipped_not_an_error_for_the_fan_out(server, connect) -> None:
    """libsrtp refuses to protect an index far behind the newest (a packet that arrives minutes
    late, or a publisher whose numbering jumped back): that subscriber is skipped, the loop goes
    on."""
    lea, ben = await connect(), await connect()
    s = await lea.create("Lea")
    b = await ben.join(s.id, "Ben")
    links = [await RtcLink.open(s), await RtcLink.open(b)]
    try:
        sender = server.server.node.media.peers[s.id][b.me].senders[0]
        assert all(sender.forward(seq, seq * 960, False, b"\xfc" * 40, 0) for seq in range(100, 6000))
        assert not sender.forward(100, 96000, False, b"\xfc" * 40, 0)  # 5900 packets (2 min) late
        assert sender.forward(6000, 6000 * 960, False, b"\xfc" * 40, 0)
    finally:
        for link in links:
            await link.close()


@pytest.mark.timeout(60)
async def test_past_the_data_channel_cap_state_stays_on_the_websocket() -> None:
    server, port = await start(make_config(rtc_state_channel_max=1))
    url = f"ws://127.0.0.1:{port}/ws"
    clients = [await Client.connect(url) for _ in range(2)]
    try:
        s = await clients[0].create("Lea")
        b = await clients[1].join(s.id, "Ben")
        links = [await RtcLink.open(s), await RtcLink.open(b)]  # two peers: one past the cap
        for i in range(10):
            await s.set({"geometry.torus.R": i})
        await b.wait_for(lambda x: x.values.get("geometry.torus.R") == 9)
        assert links[1].state_received == 0 and server.node.media.stats.state_sent == 0
        await links[0].close()  # back to one peer: the channel carries state again
        await s.set({"geometry.torus.R": 10})
        await b.wait_for(lambda x: links[1].state_received == 1 and x.values.get("geometry.torus.R") == 10)
        await links[1].close()
    finally:
        for c in clients:
            await c.close()
        await server.stop()
