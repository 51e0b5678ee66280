"""The Python SDK's WebRTC link: this participant's one peer connection to the server's SFU.

It hears the session's streams (aiortc decodes them here, on the listener: the server never
does), can publish on a slot, and takes state over an unordered, never-retransmitted data
channel, through the same path (and jitter buffer) as the WebSocket's copy.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from ..protocol.codec import decode_server
from ..protocol.messages import RtcClose, RtcOffer, RtcPublish, StateOut

if TYPE_CHECKING:
    from .session import Session

SLOTS = ("voice", "engine")  # the offer's audio m-lines, in this order (docs/protocol.md)


class RtcLink:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # no public STUN, ever
        self.transceivers = [self.pc.addTransceiver("audio", direction="sendrecv") for _ in SLOTS]
        self.channel = self.pc.createDataChannel("state", ordered=False, maxRetransmits=0)
        self.channel.on("message", self._on_message)
        self._channel_open = asyncio.Event()
        self.channel.on("open", self._channel_open.set)
        self.state_received = 0  # state messages that came over the data channel
        self._connected = asyncio.Event()
        self.pc.on("connectionstatechange", self._state_changed)

    @classmethod
    async def open(
        cls, session: Session, timeout: float = 15.0, via: Callable[[str], str] | None = None
    ) -> RtcLink:
        """Offer, apply the server's answer, wait until media and the data channel are up.
        `via` rewrites the answer first (e.g. its candidates, to go through a relay or proxy)."""
        link = cls(session)
        try:
            await link.pc.setLocalDescription(await link.pc.createOffer())  # gathers all candidates
            answer = await session.client.request(
                RtcOffer(session=session.id, sdp=link.pc.localDescription.sdp)
            )
            sdp = answer.sdp if via is None else via(answer.sdp)
            await link.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
            async with asyncio.timeout(timeout):
                await link._connected.wait()
                await link._channel_open.wait()
        except BaseException:
            await link.pc.close()
            raise
        return link

    def track(self, slot: str) -> MediaStreamTrack:
        """What the session's `slot` sounds like (decoded frames, from `await track.recv()`)."""
        return self.transceivers[SLOTS.index(slot)].receiver.track

    async def publish(self, slot: str, track: MediaStreamTrack) -> None:
        """Send `track` on `slot` and go live (the leader or a facilitator)."""
        self.transceivers[SLOTS.index(slot)].sender.replaceTrack(track)
        await self.session.client.request(RtcPublish(session=self.session.id, slot=slot, live=True))  # type: ignore[arg-type]

    async def unpublish(self, slot: str) -> None:
        await self.session.client.request(RtcPublish(session=self.session.id, slot=slot, live=False))  # type: ignore[arg-type]
        self.transceivers[SLOTS.index(slot)].sender.replaceTrack(None)

    async def close(self) -> None:
        if not self.session.client.closed:
            with contextlib.suppress(Exception):  # best effort: the server closes it when we leave
                await self.session.client.request(RtcClose(session=self.session.id))
        await self.pc.close()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def _state_changed(self) -> None:
        if self.pc.connectionState == "connected":
            self._connected.set()
        else:
            self._connected.clear()

    def _on_message(self, data: Any) -> None:
        arrival = self.session.client.clock()
        for msg in decode_server(data):
            if type(msg) is StateOut and msg.session == self.session.id:
                self.state_received += 1
                self.session.apply(msg, arrival)
                self.session.changed.notify()  # also when it was a copy: `state_received` moved
