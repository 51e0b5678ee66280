"""RTP header rewriting for forwarded packets (RFC 3550), pure and per subscriber.

Why by hand: aiortc's sender only sends what its own packetizer made from a track; an SFU needs
to send a received payload under the subscriber's own SSRC, sequence numbers and timestamps,
and that is a 12-byte header. Payloads are never touched (no transcoding).
"""

from __future__ import annotations

import struct

_HEADER = struct.Struct("!BBHII")
SEQ_MOD = 1 << 16
TS_MOD = 1 << 32


def seq_delta(a: int, b: int) -> int:
    """Signed distance from sequence number b to a, modulo 2^16."""
    return (a - b + SEQ_MOD // 2) % SEQ_MOD - SEQ_MOD // 2


def ts_delta(a: int, b: int) -> int:
    """Signed distance from RTP timestamp b to a, modulo 2^32."""
    return (a - b + TS_MOD // 2) % TS_MOD - TS_MOD // 2


def header(payload_type: int, marker: bool, seq: int, ts: int, ssrc: int) -> bytes:
    """A minimal RTP header: version 2, no padding, no extension, no CSRC."""
    return _HEADER.pack(0x80, (0x80 if marker else 0) | payload_type, seq, ts, ssrc)


class SeqRewriter:
    """Maps one subscriber's incoming sequence numbers to a continuous outgoing run.

    Within one source the offset stays put, so a loss stays a gap (the receiver conceals it) and
    a reordered packet keeps its place. A new source (another publisher, or a publisher that
    restarted) continues right after the last number sent, so the receiver sees one stream.
    """

    __slots__ = ("_last_out", "_offset", "_source")

    # A jump this large inside one source is a restart, not loss (~20 s of 20 ms packets).
    MAX_JUMP = 1000

    def __init__(self, first: int) -> None:
        self._source: object = None
        self._offset = 0
        self._last_out = (first - 1) % SEQ_MOD

    def map(self, source: object, seq: int) -> int:
        out = (seq + self._offset) % SEQ_MOD
        if source != self._source or abs(seq_delta(out, self._last_out)) > self.MAX_JUMP:
            self._source = source
            self._offset = (self._last_out + 1 - seq) % SEQ_MOD
            out = (self._last_out + 1) % SEQ_MOD
        if seq_delta(out, self._last_out) > 0:
            self._last_out = out
        return out
