"""Run things at a network time: a queue ordered by network time, mapped to the local clock.

Pure: the caller asks when the next deadline falls on its local clock (through the disciplined
clock's inverse mapping, so it follows every slew) and pops what is due. The browser maps the
same network times onto AudioContext time instead.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Any


class Scheduler:
    def __init__(self, to_local: Callable[[float], float]):
        self._to_local = to_local  # network time -> local time (e.g. DisciplinedClock.to_local)
        self._heap: list[tuple[float, int, Any]] = []
        self._seq = itertools.count()

    def schedule(self, at: float, payload: Any) -> None:
        """Queue `payload` for network time `at` (same-time items keep their insertion order)."""
        heapq.heappush(self._heap, (at, next(self._seq), payload))

    def next_due(self) -> float | None:
        """Network time of the earliest item."""
        return self._heap[0][0] if self._heap else None

    def next_local_deadline(self) -> float | None:
        return self._to_local(self._heap[0][0]) if self._heap else None

    def pop_due(self, network_now: float) -> list[tuple[float, Any]]:
        out = []
        while self._heap and self._heap[0][0] <= network_now:
            at, _, payload = heapq.heappop(self._heap)
            out.append((at, payload))
        return out

    def __len__(self) -> int:
        return len(self._heap)
