"""Reconnect delays: exponential, bounded, jittered (the browser SDK's backoff.js is its twin).

"Equal jitter": half the exponential delay is fixed, half random. The fixed half keeps a client
from hammering a server that is down; the random half spreads a thousand clients that lost the
same server at the same instant over time, so the restarted server is not hit all at once.
"""

from __future__ import annotations

BASE = 0.25  # seconds before the first retry (at most; at least half of it)
CAP = 8.0  # the longest wait between attempts


def backoff_delay(attempt: int, rand: float) -> float:
    """Seconds to wait before retry `attempt` (0 = the first), `rand` uniform in [0, 1)."""
    d = min(CAP, BASE * 2.0 ** min(attempt, 32))
    return d / 2 + rand * d / 2
