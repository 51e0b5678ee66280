"""What happens to each packet or chunk: pure, seeded, testable without sockets."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Impairment:
    """One direction's impairment. Delays in seconds; probabilities 0..1."""

    delay: float = 0.0
    jitter: float = 0.0  # mean of an exponential extra delay (queueing-like, never negative)
    loss: float = 0.0
    reorder: float = 0.0  # UDP: share of datagrams sent with an extra `reorder_gap` delay
    reorder_gap: float = 0.01
    retransmit: float = 0.2  # TCP: a "lost" chunk arrives this much later (a retransmission)


class ImpairmentModel:
    """Decides, per chunk, when it leaves; TCP keeps byte order (FIFO), UDP may drop/reorder."""

    def __init__(self, spec: Impairment, seed: int = 0):
        self.spec = spec
        self.rng = np.random.default_rng(seed)
        self._last_release = 0.0

    def _extra(self) -> float:
        s = self.spec
        return float(self.rng.exponential(s.jitter)) if s.jitter > 0 else 0.0

    def stream_release(self, now: float) -> float:
        """Release time of a TCP chunk arriving at `now`: delayed, never ahead of the one before."""
        s = self.spec
        delay = s.delay + self._extra()
        if s.loss and self.rng.random() < s.loss:
            delay += s.retransmit
        release = max(now + delay, self._last_release)
        self._last_release = release
        return release

    def datagram_release(self, now: float) -> float | None:
        """Release time of a UDP datagram arriving at `now`, or None if it is lost."""
        s = self.spec
        if s.loss and self.rng.random() < s.loss:
            return None
        delay = s.delay + self._extra()
        if s.reorder and self.rng.random() < s.reorder:
            delay += s.reorder_gap
        return now + delay
