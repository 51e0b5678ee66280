"""The SFU's pure parts: per-subscriber sequence rewriting and a slot's clock map (simulated)."""

from __future__ import annotations

import random

import pytest

from collective_sync.server.sfu.peer import MAX_CANDIDATES, usable_candidates
from collective_sync.server.sfu.rtp import SeqRewriter, header, seq_delta, ts_delta
from collective_sync.server.sfu.streamclock import SlotTimeline

RATE = 48000
FRAME = 960  # 20 ms of Opus


def test_header_is_rtp_version_2_with_marker_type_and_ids() -> None:
    h = header(111, True, 0xBEEF, 0x01020304, 0xCAFEBABE)
    assert h == bytes([0x80, 0x80 | 111, 0xBE, 0xEF, 1, 2, 3, 4, 0xCA, 0xFE, 0xBA, 0xBE])
    assert header(96, False, 1, 2, 3)[1] == 96


def test_deltas_are_signed_across_the_wrap() -> None:
    assert seq_delta(2, 65534) == 4
    assert seq_delta(65534, 2) == -4
    assert ts_delta(5, 2**32 - 5) == 10
    assert ts_delta(2**32 - 5, 5) == -10


def test_a_subscriber_sees_one_continuous_run_across_publishers_and_wraps() -> None:
    rw = SeqRewriter(first=65530)
    out = [rw.map("A", s) for s in range(100, 110)]
    assert out == [(65530 + i) % 65536 for i in range(10)]  # starts where asked, wraps
    out_b = [rw.map("B", s) for s in (40000, 40001)]  # another publisher takes the slot
    assert out_b == [(out[-1] + 1) % 65536, (out[-1] + 2) % 65536]


def test_loss_stays_a_gap_and_reordering_keeps_its_place() -> None:
    rw = SeqRewriter(first=10)
    assert [rw.map("A", s) for s in (500, 501, 503)] == [10, 11, 13]  # 502 lost: still a gap
    assert rw.map("A", 502) == 12  # late, in its place
    assert rw.map("A", 504) == 14


def test_a_publisher_restart_inside_one_source_is_rebased_not_a_huge_gap() -> None:
    rw = SeqRewriter(first=0)
    rw.map("A", 100)
    assert rw.map("A", 30000) == 1


def _stream(
    tl: SlotTimeline,
    source: object,
    seconds: float,
    start: float,
    ppm: float = 0.0,
    jitter: float = 0.0,
    ts0: int = 0,
    seed: int = 1,
) -> list[tuple[int, float, float]]:
    """Packets captured every 20 ms on a sample clock off by `ppm`; each arrives after a fixed
    5 ms plus an exponential queueing delay. Returns (out_ts, arrival, capture) per packet."""
    rng = random.Random(seed)
    out = []
    n = int(seconds * 50)
    for i in range(n):
        capture = start + i * FRAME / (RATE * (1 + ppm * 1e-6))
        arrival = capture + 0.005 + (rng.expovariate(1 / jitter) if jitter else 0.0)
        ts, _ = tl.packet(source, (ts0 + i * FRAME) % 2**32, arrival)
        out.append((ts, arrival, capture))
    return out


def test_the_map_is_the_lower_envelope_of_arrival_under_jitter() -> None:
    tl = SlotTimeline(first_ts=1234, window=1.0)
    pkts = _stream(tl, "A", 30.0, start=1000.0, jitter=0.004)
    assert tl.map is not None
    errors = [tl.map.time_of(ts) - (capture + 0.005) for ts, _, capture in pkts[-500:]]
    # against the capture clock (+ the fixed path delay): never late by the queueing's mean
    assert max(abs(e) for e in errors) < 0.001
    assert all(arr >= tl.map.time_of(ts) - 0.0005 for ts, arr, _ in pkts[-500:])


@pytest.mark.parametrize("ppm", [-100.0, 50.0])
def test_the_map_follows_a_drifting_sample_clock(ppm: float) -> None:
    tl = SlotTimeline(first_ts=0, window=2.0)
    pkts = _stream(tl, "A", 600.0, start=50.0, ppm=ppm, jitter=0.002)
    assert tl.map is not None
    assert tl.map.rate == pytest.approx(RATE * (1 + ppm * 1e-6), rel=5e-6)
    # without a rate the error would grow to ppm * 600 s (30-60 ms); with it, sub-millisecond
    errors = [tl.map.time_of(ts) - (capture + 0.005) for ts, _, capture in pkts[-100:]]
    assert max(abs(e) for e in errors) < 0.001


def test_a_new_publisher_continues_the_timeline_and_gets_its_own_map() -> None:
    tl = SlotTimeline(first_ts=2**32 - 2000)  # the timeline wraps during the first run
    first = _stream(tl, "A", 1.0, start=10.0)
    map_a = tl.map
    second = _stream(tl, "B", 1.0, start=13.0, ts0=777)  # 2 s of silence between the two
    assert tl.map is not None and tl.map != map_a
    gap = ts_delta(second[0][0], first[-1][0])
    assert gap == pytest.approx(2.02 * RATE, abs=FRAME)  # the silence is kept in RTP time
    assert tl.map.time_of(second[10][0]) == pytest.approx(second[10][2] + 0.005, abs=1e-6)


def test_maps_are_only_republished_when_they_move() -> None:
    tl = SlotTimeline(first_ts=0, window=1.0)
    published = 0
    for i in range(50 * 60):
        _, new = tl.packet("A", i * FRAME, 5.0 + i * 0.02 + 0.005)
        published += new is not None
    assert published <= 2  # the first, and at most one refinement of a perfect clock


def test_only_usable_candidates_are_kept_and_at_most_a_bound() -> None:
    lines = [
        "a=candidate:1 1 udp 1 127.0.0.1 5000 typ host",
        "a=candidate:2 1 udp 1 3f0a-uuid.local 5001 typ host",  # mDNS: would need multicast
        "a=candidate:3 1 udp 1 10.1.2.3 5002 typ host",
        "a=candidate:4 1 udp 1 ::1 5003 typ host",
        "a=candidate:broken",
    ]
    sdp = "v=0\r\n" + "\r\n".join(lines) + "\r\n"
    kept = [
        ln.split()[4] for ln in usable_candidates(sdp, loopback_only=True).splitlines() if "candidate" in ln
    ]
    assert kept == ["127.0.0.1", "::1"]
    kept = [
        ln.split()[4] for ln in usable_candidates(sdp, loopback_only=False).splitlines() if "candidate" in ln
    ]
    assert kept == ["127.0.0.1", "10.1.2.3", "::1"]
    many = "v=0\r\n" + "".join(f"a=candidate:{i} 1 udp 1 127.0.0.1 {i} typ host\r\n" for i in range(100))
    assert usable_candidates(many, True).count("a=candidate") == MAX_CANDIDATES


def test_no_rate_is_fitted_from_a_short_or_implausible_history() -> None:
    tl = SlotTimeline(first_ts=0)
    _stream(tl, "A", 15.0, start=1.0, jitter=0.02, seed=3)  # a busy start: 20 ms queueing
    assert tl.map is not None and tl.map.rate == RATE  # too short a span to believe a slope
    far = SlotTimeline(first_ts=0)
    _stream(far, "A", 120.0, start=1.0, ppm=800.0)  # no sound card is this far off
    assert far.map is not None and far.map.rate == RATE
