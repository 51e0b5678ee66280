"""Per-connection token bucket, driven by explicit time so it is testable without sleeping."""

from __future__ import annotations

from enum import Enum


class Verdict(Enum):
    OK = 0
    DROP = 1  # over the rate: drop the message (tell the sender once)
    ABUSE = 2  # kept flooding long after being told: close the connection


class TokenBucket:
    """`rate` tokens/s up to `burst`; rejected messages still draw tokens into debt, and a debt
    of `burst` more means the sender ignores rate-limit errors, which is abuse."""

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: int, now: float):
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._last = now

    def take(self, now: float) -> Verdict:
        elapsed = now - self._last
        self._last = now
        tokens = min(self.burst, self._tokens + elapsed * self.rate) - 1.0
        self._tokens = tokens
        if tokens >= 0:
            return Verdict.OK
        return Verdict.ABUSE if tokens < -self.burst else Verdict.DROP
