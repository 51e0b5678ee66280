"""The SFU's routing: which peer publishes on which slot, and who gets every packet.

A packet from a slot's publisher is rewritten once per subscriber (its SSRC and sequence
numbers; the slot's timestamps are shared, so one clock map per slot serves every listener) and
written straight to each subscriber's SRTP transport in the same event-loop turn. Nothing here
decodes or encodes. The node owns the rules (who may publish) and tells the hub; the hub tells
the node what it learns (a peer connected or went away, a slot's clock map changed).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiortc.rtp import RtpPacket

from .peer import SLOTS, Peer, ntp_now
from .rtp import SeqRewriter
from .streamclock import ClockMap, SlotTimeline

log = logging.getLogger("collective_sync.sfu")

# Bounds of the forwarding-latency histogram (seconds): receive to the last subscriber's send.
# Fine between 0.5 and 10 ms, where a session's size is decided (p99 <= 5 ms is the goal).
FORWARD_BUCKETS = (
    25e-6, 50e-6, 100e-6, 200e-6, 350e-6, 500e-6, 750e-6, 1e-3, 1.5e-3, 2e-3, 2.5e-3, 3e-3,
    3.5e-3, 4e-3, 4.5e-3, 5e-3, 6e-3, 7e-3, 8e-3, 10e-3, 15e-3, 20e-3, 50e-3,
)  # fmt: skip
STATE_CHANNEL_BUFFER = 64 * 1024  # bytes queued on a data channel beyond which state waits for the WS


class HubListener(Protocol):
    def media_peer(self, sid: str, pid: str, up: bool) -> None: ...
    def media_map(self, sid: str, slot: str, clock_map: ClockMap) -> None: ...


OFFER_INTERVAL = 0.5  # seconds between two offers of one participant


class AtCapacity(Exception):
    """No room for another peer connection (the client stays on the WebSocket)."""


class TooSoon(Exception):
    """An offer right after the previous one (each builds a peer connection: bounded work)."""


@dataclass
class _Slot:
    timeline: SlotTimeline
    publisher: str | None = None
    rewriters: dict[str, SeqRewriter] = field(default_factory=dict)  # per subscriber


@dataclass
class SfuStats:
    packets_in: int = 0
    packets_out: int = 0
    bytes_out: int = 0
    dropped_not_publisher: int = 0  # RTP on a slot from someone who is not live on it
    state_sent: int = 0  # state messages sent on data channels
    state_skipped: int = 0  # ... not sent there (channel busy or closed; the WebSocket carries them)
    forward_buckets: list[int] = field(default_factory=lambda: [0] * (len(FORWARD_BUCKETS) + 1))
    forward_sum: float = 0.0
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=1_000))  # ~20 s at 50/s


class MediaHub:
    def __init__(
        self,
        listener: HubListener,
        clock: Callable[[], float],
        max_peers: int = 500,
        state_channel_max: int = 100,
        loopback_only: bool = False,
    ) -> None:
        self.loopback_only = loopback_only  # offered on loopback only: use loopback candidates only
        self.listener = listener
        self.clock = clock
        self.max_peers = max_peers
        self.state_channel_max = state_channel_max  # per session: above it, state stays on the WS
        self.peers: dict[str, dict[str, Peer]] = {}  # session -> participant -> peer
        self.slots: dict[str, list[_Slot]] = {}
        self.stats = SfuStats()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._count = 0

    # --- signalling (called by the node) ------------------------------------------------------

    def offer(self, sid: str, pid: str, sdp: str, done: Callable[[str | None, str | None], None]) -> None:
        """Replace this participant's peer connection; `done(answer, None)` or `done(None, why)`."""
        now = self.clock()
        old = self.peers.get(sid, {}).get(pid)
        if old is None and self._count >= self.max_peers:
            raise AtCapacity(f"the server is at its {self.max_peers} WebRTC peers; stay on the WebSocket")
        if old is not None:
            if now - old.created_at < OFFER_INTERVAL:
                raise TooSoon(f"one offer per {OFFER_INTERVAL:g} s: each one builds a peer connection")
            self._drop(old, replaced=True)  # the participant stays live and listening meanwhile
        peer = Peer(sid, pid, self._on_packet, self._on_peer_state, self.loopback_only, now)
        self.peers.setdefault(sid, {})[pid] = peer
        self._count += 1

        async def negotiate() -> None:
            try:
                answer = await peer.answer(sdp)
            except Exception as exc:  # a broken offer: aiortc raises many types
                log.info("offer from %s/%s refused: %s", sid, pid, exc)
                self._drop(peer)
                done(None, f"the offer could not be used: {exc}")
            else:
                if not peer.closed:
                    done(answer, None)

        self._spawn(negotiate())

    def candidate(self, sid: str, pid: str, candidate: str, mid: str | None, index: int | None) -> bool:
        peer = self.peers.get(sid, {}).get(pid)
        if peer is None:
            return False
        self._spawn(peer.add_candidate(candidate, mid, index))
        return True

    def has_peer(self, sid: str, pid: str) -> bool:
        return pid in self.peers.get(sid, {})

    def close(self, sid: str, pid: str) -> None:
        peer = self.peers.get(sid, {}).get(pid)
        if peer is not None:
            self._drop(peer)

    def end_session(self, sid: str) -> None:
        for peer in list(self.peers.get(sid, {}).values()):
            self._drop(peer)
        self.slots.pop(sid, None)

    def set_publisher(self, sid: str, slot: str, pid: str | None) -> None:
        self._slot(sid, SLOTS.index(slot)).publisher = pid

    async def stop(self) -> None:
        for sid in list(self.peers):
            self.end_session(sid)
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2.0)

    # --- state over data channels --------------------------------------------------------------

    def state_channels(self, sid: str) -> dict[str, Peer] | None:
        """Peers of `sid` to send state over their data channel, or None (WebSocket only)."""
        peers = self.peers.get(sid)
        if not peers or len(peers) > self.state_channel_max:
            return None
        return peers

    def send_state(self, peer: Peer, text: str) -> bool:
        """Unordered, never retransmitted: a lost one is repaired by the WebSocket's copy."""
        ch = peer.channel
        if ch is None or ch.readyState != "open" or ch.bufferedAmount > STATE_CHANNEL_BUFFER:
            self.stats.state_skipped += 1
            return False
        ch.send(text)
        self.stats.state_sent += 1
        return True

    # --- media -------------------------------------------------------------------------------------

    async def _on_packet(self, peer: Peer, index: int, packet: RtpPacket) -> None:
        start = time.perf_counter()
        stats = self.stats
        stats.packets_in += 1
        slots = self.slots.get(peer.sid)
        slot = slots[index] if slots is not None else None
        subscribers = self.peers.get(peer.sid)
        if slot is None or slot.publisher != peer.pid or subscribers is None or peer.closed:
            stats.dropped_not_publisher += 1
            return
        source = (peer.pid, packet.ssrc)
        ts, new_map = slot.timeline.packet(source, packet.timestamp, self.clock())
        if new_map is not None:
            self.listener.media_map(peer.sid, SLOTS[index], new_map)
        payload, marker, seq_in = packet.payload, bool(packet.marker), packet.sequence_number
        ntp = ntp_now()
        rewriters = slot.rewriters
        sent = 0
        for pid, sub in subscribers.items():  # nothing below yields to the loop
            if sub is peer or not sub.connected:
                continue
            rw = rewriters.get(pid)
            if rw is None:
                rw = rewriters[pid] = SeqRewriter(secrets.randbelow(1 << 16))
            if sub.senders[index].forward(rw.map(source, seq_in), ts, marker, payload, ntp):
                sent += 1
        stats.packets_out += sent
        stats.bytes_out += sent * (len(payload) + 12)
        elapsed = time.perf_counter() - start
        stats.forward_sum += elapsed
        stats.recent.append(elapsed)
        stats.forward_buckets[bisect_left(FORWARD_BUCKETS, elapsed)] += 1

    # --- internals -----------------------------------------------------------------------------

    def _slot(self, sid: str, index: int) -> _Slot:
        slots = self.slots.get(sid)
        if slots is None:
            slots = self.slots[sid] = [_Slot(SlotTimeline(secrets.randbelow(1 << 32))) for _ in SLOTS]
        return slots[index]

    def _on_peer_state(self, peer: Peer) -> None:
        if self.peers.get(peer.sid, {}).get(peer.pid) is not peer:
            return  # replaced meanwhile
        if peer.closed:
            self._drop(peer)
        else:
            self.listener.media_peer(peer.sid, peer.pid, peer.connected)

    def _drop(self, peer: Peer, replaced: bool = False) -> None:
        peers = self.peers.get(peer.sid)
        if peers is None or peers.get(peer.pid) is not peer:
            return
        del peers[peer.pid]
        if not peers:
            del self.peers[peer.sid]
        self._count -= 1
        for slot in self.slots.get(peer.sid, []):
            slot.rewriters.pop(peer.pid, None)
        was_up = peer.connected
        peer.connected = False
        if peer.pc.connectionState != "closed":
            self._spawn(peer.close())
        if was_up and not replaced:
            self.listener.media_peer(peer.sid, peer.pid, False)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
