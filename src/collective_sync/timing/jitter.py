"""Playout (jitter) buffer: apply every update at its sender time + D, in timestamp order.

Everyone must apply the same change at the same network instant, so the buffer's delay D is a
session-wide value (announced by the leader or server, `set_delay`); each receiver's adaptive
estimate (`suggested_delay`) is what a leader would announce. The estimate follows NetEQ's idea:
watch the transit delays (arrival - `at`) and pick the smallest delay that keeps the share of
late arrivals under a target, moving up quickly and down slowly.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

FORGET_EVERY = 1024  # applications between sweeps of the per-key memory


@dataclass(order=True, slots=True)
class Item:
    """One update: applied at `at + D`; ties broken by (sender, seq) so every receiver agrees."""

    at: float
    sender: str
    seq: int
    keys: tuple[Hashable, ...] = field(compare=False)
    payload: Any = field(compare=False, default=None)


@dataclass
class JitterStats:
    received: int = 0
    applied: int = 0
    late_applied: int = 0  # arrived after its playout time but still the newest for its keys
    late_dropped: int = 0  # arrived late and superseded: never applied
    reordered: int = 0  # arrived with an `at` older than one already received

    @property
    def late(self) -> int:
        return self.late_applied + self.late_dropped

    @property
    def late_ratio(self) -> float:
        return self.late / self.received if self.received else 0.0


@dataclass
class AdaptiveDelayConfig:
    target_late: float = 0.001  # share of arrivals allowed to be late (per receiver; a session of
    # N receivers is on time everywhere for about 1 - N x this of its updates)
    margin: float = 0.005  # added on top of the transit percentile (s)
    window: int = 1000  # transits remembered
    min_delay: float = 0.02
    max_delay: float = 1.0
    up_rate: float = 0.5  # how fast the suggestion may grow (s of delay per s)
    down_rate: float = 0.01  # ... and shrink: slowly, to avoid oscillating


class JitterBuffer:
    """Pure: `push` with the arrival network time, `pop_due` with the current network time."""

    def __init__(
        self,
        delay: float = 0.15,
        adaptive: AdaptiveDelayConfig | None = None,
        memory: float = 60.0,
        max_keys: int = 65_536,
    ):
        self.delay = delay
        self.memory = memory  # seconds of "last applied" stamps remembered per key
        self.max_keys = max_keys
        self.adaptive = adaptive or AdaptiveDelayConfig()
        self.stats = JitterStats()
        self.suggested_delay = delay
        self._heap: list[Item] = []
        self._newest: dict[Hashable, tuple[float, str, int]] = {}  # key -> stamp last applied
        self._floor = -np.inf  # stamps older than this were forgotten: late items below it drop
        self._marks = 0
        self._transits: deque[float] = deque(maxlen=self.adaptive.window)
        self._max_at = -np.inf
        self._last_adapt: float | None = None

    def set_delay(self, delay: float) -> None:
        """The session's agreed playout delay (announced by the leader or the server)."""
        self.delay = delay

    def push(self, item: Item, arrival: float) -> list[Item]:
        """Take an update that arrived at network time `arrival`; returns it at once if late."""
        st = self.stats
        st.received += 1
        self._transits.append(arrival - item.at)
        self._adapt(arrival)
        stamp = (item.at, item.sender, item.seq)
        if item.at < self._max_at:
            st.reordered += 1
        else:
            self._max_at = item.at
        if item.at + self.delay > arrival:
            heapq.heappush(self._heap, item)
            return []
        if item.at >= self._floor and all(self._newest.get(k, (-np.inf, "", -1)) < stamp for k in item.keys):
            st.late_applied += 1
            self._mark_applied(item)
            return [item]
        st.late_dropped += 1
        return []

    def pop_due(self, now: float) -> list[Item]:
        """Every buffered update whose playout time `at + D` has come, in (at, sender, seq) order."""
        out: list[Item] = []
        heap = self._heap
        while heap and heap[0].at + self.delay <= now:
            item = heapq.heappop(heap)
            self._mark_applied(item)
            out.append(item)
        return out

    def next_due(self) -> float | None:
        """Network time of the next playout, for a scheduler to sleep until."""
        return self._heap[0].at + self.delay if self._heap else None

    def __len__(self) -> int:
        return len(self._heap)

    def _mark_applied(self, item: Item) -> None:
        self.stats.applied += 1
        stamp = (item.at, item.sender, item.seq)
        for k in item.keys:
            if self._newest.get(k, (-np.inf, "", -1)) < stamp:
                self._newest[k] = stamp
        self._marks += 1
        if self._marks % FORGET_EVERY == 0 or len(self._newest) > self.max_keys:
            self._forget()

    def _forget(self) -> None:
        """Bound the memory of what was applied: keys last applied more than `memory` s before
        the newest update are forgotten (and a late update older than that is dropped, not
        applied); if more than `max_keys` remain, the older half goes the same way."""
        floor = self._max_at - self.memory
        if len(self._newest) > self.max_keys:
            floor = max(floor, float(np.median([v[0] for v in self._newest.values()])))
        if floor > self._floor:
            self._floor = floor
            self._newest = {k: v for k, v in self._newest.items() if v[0] >= floor}

    def _adapt(self, now: float) -> None:
        cfg = self.adaptive
        last, self._last_adapt = self._last_adapt, now
        if len(self._transits) < 20:
            return
        pct = float(np.percentile(np.fromiter(self._transits, float), 100 * (1 - cfg.target_late)))
        target = min(cfg.max_delay, max(cfg.min_delay, pct + cfg.margin))
        dt = 0.0 if last is None else max(0.0, now - last)
        cur = self.suggested_delay
        if target > cur:
            self.suggested_delay = min(target, cur + cfg.up_rate * max(dt, 0.02))
        else:
            self.suggested_delay = max(target, cur - cfg.down_rate * dt)
