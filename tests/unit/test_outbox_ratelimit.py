"""Per-receiver queueing (coalescing while congested) and the token bucket."""

from __future__ import annotations

import msgspec

from collective_sync.protocol.codec import decode_server, encode
from collective_sync.protocol.messages import StateOut
from collective_sync.server.outbox import Outbox
from collective_sync.server.ratelimit import TokenBucket, Verdict


def state(v: int, values: dict, session: str = "s") -> tuple[bytes, StateOut]:
    msg = StateOut(session=session, v=v, at=float(v), sender="p", set=values)
    return encode(msg), msg


def test_fifo_when_not_congested() -> None:
    box = Outbox(max_backlog=1000)
    box.push(b'{"type":"ack","rid":1}')
    box.push_state(*state(1, {"geometry.R": 1}))
    frame = box.take()
    assert [type(m).__name__ for m in decode_server(frame)] == ["Ack", "StateOut"]
    assert box.take() is None


def test_congested_state_keeps_only_latest_per_key_and_reliable_in_order() -> None:
    box = Outbox(max_backlog=10_000)
    box.paused = True
    for v in range(1, 101):
        box.push_state(*state(v, {"geometry.R": v, f"oscillators.{v % 2}.f": v}))
        if v % 50 == 0:
            box.push(encode(StateOut(session="x", v=0, at=0.0, sender="ctl")))  # stands in for reliable
    box.push_state(*state(7, {"geometry.r": 1}, session="t"))
    assert box.coalesced_drops == 200 - 3  # 200 values pushed to s, 3 distinct keys survive
    box.paused = False
    msgs = decode_server(box.take())
    reliable = [m for m in msgs if m.session == "x"]
    merged = {m.session: m for m in msgs if m.coalesced}
    assert len(reliable) == 2
    assert merged["s"].set == {"geometry.R": 100, "oscillators.0.f": 100, "oscillators.1.f": 99}
    assert merged["s"].v == 100
    assert merged["t"].set == {"geometry.r": 1}


def test_backlog_bound() -> None:
    box = Outbox(max_backlog=100)
    box.paused = True
    assert box.push(b"x" * 60)
    assert not box.push(b"x" * 60)


def test_token_bucket() -> None:
    bucket = TokenBucket(rate=10, burst=5, now=0.0)
    assert [bucket.take(0.0) for _ in range(5)] == [Verdict.OK] * 5
    assert bucket.take(0.0) is Verdict.DROP
    assert bucket.take(0.1) is Verdict.OK  # one token refilled: served, the drop cost nothing
    verdicts = [bucket.take(0.1) for _ in range(7)]
    assert verdicts == [Verdict.DROP] * 5 + [Verdict.ABUSE] * 2  # more than `burst` dropped: abuse


def test_token_bucket_recovers_without_debt() -> None:
    """After a burst over the limit and a pause, a sender under the rate is served at once."""
    bucket = TokenBucket(rate=20, burst=10, now=0.0)
    verdicts = [bucket.take(0.0) for _ in range(18)]
    assert verdicts.count(Verdict.OK) == 10 and verdicts.count(Verdict.DROP) == 8
    assert bucket.excess
    t = 1.0  # a 1 s pause refills the bucket (20 tokens, capped at 10) and pays off the 8 drops
    for _ in range(40):  # then 20 messages/s, exactly the rate, for 2 s
        assert bucket.take(t) is Verdict.OK
        t += 1 / 20
    assert not bucket.excess


def test_token_bucket_tolerates_a_clock_that_goes_back() -> None:
    bucket = TokenBucket(rate=10, burst=2, now=5.0)
    assert bucket.take(4.0) is Verdict.OK
    assert bucket.take(4.0) is Verdict.OK
    assert bucket.take(4.5) is Verdict.DROP  # no refill for time that went backwards


def test_state_message_roundtrip() -> None:
    data, msg = state(3, {"geometry.R": 1.5})
    assert msgspec.json.decode(data)["from"] == "p"
    assert decode_server(data) == [msg]
