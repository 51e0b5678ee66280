"""Per-connection token bucket, driven by explicit time so it is testable without sleeping."""

from __future__ import annotations

from enum import Enum


class Verdict(Enum):
    OK = 0
    DROP = 1  # over the rate: drop the message (tell the sender once)
    ABUSE = 2  # kept flooding long after being told: close the connection


class TokenBucket:
    """`rate` tokens/s up to `burst`; a message is served when a whole token is there.

    A dropped message takes nothing from the bucket, so a sender that is back under the rate is
    served again at once (no debt to pay off). Dropped messages fill a second bucket that drains
    at `rate`: more than `burst` drops beyond what the rate would have allowed means the sender
    ignores rate-limit errors, which is abuse.
    """

    __slots__ = ("_dropped", "_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: int, now: float):
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._dropped = 0.0
        self._last = now

    @property
    def excess(self) -> bool:
        """Dropped messages not yet paid off by time under the rate."""
        return self._dropped > 0.0

    def take(self, now: float) -> Verdict:
        refill = max(0.0, now - self._last) * self.rate
        self._last = max(self._last, now)
        self._tokens = min(float(self.burst), self._tokens + refill)
        self._dropped = max(0.0, self._dropped - refill)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return Verdict.OK
        self._dropped += 1.0
        return Verdict.ABUSE if self._dropped > self.burst else Verdict.DROP
