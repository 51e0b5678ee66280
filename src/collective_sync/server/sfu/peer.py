"""aiortc glue: one RTCPeerConnection per participant, with forwarding instead of codecs.

aiortc's receiver decodes every frame and its sender encodes or packetizes what a track yields;
an SFU wants neither. Here the receiver hands each parsed RTP packet to the hub (no jitter
buffer, no decoder queue, so no decoder is ever created) and the sender writes the hub's
rewritten packets straight into its DTLS-SRTP transport. The sender's own loop waits forever on
an idle track, so it costs nothing; its RTCP task keeps sending sender reports, fed with the
counters of what we forwarded. Everything that touches aiortc internals is in this module.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pylibsrtp
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc import clock as rtc_clock
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtcrtpreceiver import StreamStatistics
from aiortc.rtp import RtpPacket
from aiortc.sdp import candidate_from_sdp

from .rtp import header

log = logging.getLogger("collective_sync.sfu")

SLOTS = ("voice", "engine")  # audio m-lines of a client's offer, in this order


MAX_CANDIDATES = 32  # remote candidates per peer (each one is checked: bounded work and traffic)


def usable_candidates(sdp: str, loopback_only: bool) -> str:
    """Keep the candidates we may use: IP literals (an mDNS `*.local` name would need multicast
    queries, and is not needed: the client's connectivity checks reveal its address to us as a
    peer-reflexive candidate), loopback ones only when the server offers loopback only (its
    checks must not leave the machine), and at most MAX_CANDIDATES."""
    kept = 0
    lines = []
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            if kept >= MAX_CANDIDATES or not usable(line, loopback_only):
                continue
            kept += 1
        lines.append(line)
    return "\r\n".join(lines) + "\r\n"


def usable(candidate_line: str, loopback_only: bool) -> bool:
    bits = candidate_line.split()
    if len(bits) < 8:
        return False
    try:
        address = ipaddress.ip_address(bits[4])
    except ValueError:
        return False
    return address.is_loopback or not loopback_only


class _Idle(MediaStreamTrack):
    """The sender's track: never yields, so aiortc's send loop sleeps; the hub sends instead."""

    kind = "audio"

    async def recv(self) -> Any:
        await asyncio.Event().wait()


class ForwardingReceiver(RTCRtpReceiver):
    """Keeps the receiver statistics (for RTCP receiver reports) and hands packets on, encoded."""

    sink: Callable[[RtpPacket], Awaitable[None]] | None = None

    async def _handle_rtp_packet(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        codec = self._RTCRtpReceiver__codecs.get(packet.payload_type)  # type: ignore[attr-defined]
        if codec is None or codec.mimeType.lower() != "audio/opus":
            return
        streams = self._RTCRtpReceiver__remote_streams  # type: ignore[attr-defined]
        stats = streams.get(packet.ssrc)
        if stats is None:
            stats = streams[packet.ssrc] = StreamStatistics(codec.clockRate)
        stats.add(packet)
        if self.sink is not None:
            await self.sink(packet)


class ForwardingSender(RTCRtpSender):
    """Sends forwarded payloads under this subscriber's SSRC; counts them for sender reports."""

    payload_type: int | None = None  # the subscriber's Opus payload type, once negotiated

    async def send(self, parameters: Any) -> None:
        codec = parameters.codecs[0] if parameters.codecs else None
        if codec is not None and codec.mimeType.lower() == "audio/opus":
            self.payload_type = codec.payloadType
        await super().send(parameters)

    def forward(self, seq: int, ts: int, marker: bool, payload: bytes, ntp: int) -> bool:
        """Protect and send one packet now; False when this subscriber cannot take it yet.

        Why not `transport._send_rtp`: that is five nested coroutines (DTLS, ICE transport,
        aioice connection, pair, protocol) around one SRTP protect and one `sendto`, and their
        cost per subscriber is what limits a session's size (docs/benchmarks.md). This does the
        same two calls directly, on the pair ICE nominated.
        """
        pt = self.payload_type
        dtls = self.transport
        if pt is None or dtls._state is not DtlsState.CONNECTED:
            return False
        pair = dtls.transport._connection._nominated.get(1)  # RTP and RTCP share component 1
        if pair is None:
            return False
        try:  # libsrtp refuses an index it already protected (a duplicated incoming packet)
            protected = dtls._tx_srtp.protect(header(pt, marker, seq, ts, self._ssrc) + payload)
        except pylibsrtp.Error:
            return False
        pair.protocol.transport.sendto(protected, pair.remote_addr)
        self._RTCRtpSender__ntp_timestamp = ntp
        self._RTCRtpSender__rtp_timestamp = ts
        self._RTCRtpSender__octet_count += len(payload)  # type: ignore[attr-defined]
        self._RTCRtpSender__packet_count += 1  # type: ignore[attr-defined]
        return True


def ntp_now() -> int:
    return rtc_clock.current_ntp_time()


class Peer:
    """One participant's peer connection to the SFU."""

    def __init__(
        self,
        sid: str,
        pid: str,
        on_packet: Callable[[Peer, int, RtpPacket], Awaitable[None]],
        on_state: Callable[[Peer], None],
        loopback_only: bool,
        created_at: float,
    ) -> None:
        self.sid, self.pid = sid, pid
        self.loopback_only = loopback_only
        self.created_at = created_at
        self.candidates = 0
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # never a public STUN server
        self.senders: list[ForwardingSender] = []  # per slot
        self.channel: Any = None  # the "state" data channel, once the client opened it
        self.connected = False
        self.closed = False
        self._on_packet, self._on_state = on_packet, on_state
        self.pc.on("connectionstatechange", self._state_changed)
        self.pc.on("datachannel", self._datachannel)

    async def answer(self, offer_sdp: str) -> str:
        await self.pc.setRemoteDescription(
            RTCSessionDescription(sdp=usable_candidates(offer_sdp, self.loopback_only), type="offer")
        )
        audio = [t for t in self.pc.getTransceivers() if t.kind == "audio"]
        if len(audio) < len(SLOTS) or any(t.kind == "video" for t in self.pc.getTransceivers()):
            raise ValueError(f"the offer needs {len(SLOTS)} audio m-lines ({', '.join(SLOTS)}) and no video")
        for index, t in enumerate(audio[: len(SLOTS)]):
            # Swap in the forwarding behaviour before the connection starts them (no codecs).
            receiver, sender = t.receiver, t.sender
            receiver.__class__ = ForwardingReceiver
            sender.__class__ = ForwardingSender
            assert isinstance(receiver, ForwardingReceiver) and isinstance(sender, ForwardingSender)
            receiver.sink = lambda packet, i=index: self._on_packet(self, i, packet)
            self.senders.append(sender)
            self.pc.addTrack(_Idle())
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return self.pc.localDescription.sdp

    async def add_candidate(self, candidate: str, mid: str | None, index: int | None) -> None:
        text = candidate.removeprefix("candidate:")
        if not text or not usable("a=candidate:" + text, self.loopback_only):
            return  # end of candidates, or one we will not use (see usable_candidates)
        self.candidates += 1
        if self.candidates > MAX_CANDIDATES:
            return
        c = candidate_from_sdp(text)
        c.sdpMid, c.sdpMLineIndex = mid, index if index is not None else (0 if mid is None else None)
        await self.pc.addIceCandidate(c)

    async def close(self) -> None:
        self.closed = True
        self.connected = False
        await self.pc.close()

    def _state_changed(self) -> None:
        state = self.pc.connectionState
        up = state == "connected"
        if up != self.connected:
            self.connected = up
            self._on_state(self)
        if state in ("failed", "closed") and not self.closed:
            self.closed = True  # the hub drops it and closes the connection
            self._on_state(self)

    def _datachannel(self, channel: Any) -> None:
        if channel.label != "state":
            return
        self.channel = channel
        channel.on("close", lambda: setattr(self, "channel", None) if self.channel is channel else None)
