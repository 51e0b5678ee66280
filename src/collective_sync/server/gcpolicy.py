"""Garbage collection for a server that holds tens of thousands of live connections.

CPython's cyclic collector walks every tracked object of the generations it collects. With
10,000 connections the oldest generation holds millions, and while a ceremony fills up (the
heap growing) it is collected again and again: 0.5-0.7 s pauses of the event loop in the middle
of a join storm, measured here, and 0.1-0.3 s for the middle one. What survives a collection of
the middle or oldest generation is long-lived (sessions, connections), so it is frozen
(`gc.freeze`: no longer walked; reference counting still frees it), and every collection then
walks only what is new. The price: cycles that become garbage after being frozen (some tens of
objects per closed connection) stay until a thaw. A thaw (`unfreeze` and a full collection)
runs when as many connections have closed since the last one as are open now (and at least
`thaw_min`), so the leak stays below the live heap and the long pause falls when the server is
emptier. Free of I/O; the server calls `tick` with its counters.
"""

from __future__ import annotations

import gc
import logging
import time
from typing import Any

log = logging.getLogger("collective_sync.gc")


class GcPolicy:
    def __init__(self, young: int = 50_000, thaw_min: int = 1000):
        self.young = young  # allocations between young collections (CPython's default: 700)
        self.thaw_min = thaw_min
        self._closed_at_thaw = 0
        self._saved: tuple[int, int, int] | None = None
        self.thaws = 0

    def start(self) -> None:
        self._saved = gc.get_threshold()
        gc.collect()
        gc.freeze()  # what the server holds from start-up: never garbage
        gc.set_threshold(self.young, 5, 5)
        gc.callbacks.append(self._collected)

    def stop(self) -> None:
        if self._collected in gc.callbacks:
            gc.callbacks.remove(self._collected)
        if self._saved is not None:
            gc.set_threshold(*self._saved)
        gc.unfreeze()

    def _collected(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "stop" and info["generation"] >= 1:
            gc.freeze()

    def tick(self, closed_total: int, live: int) -> None:
        """`closed_total`: connections closed since start; `live`: open now."""
        closed = closed_total - self._closed_at_thaw
        if closed >= max(self.thaw_min, live):
            self._closed_at_thaw = closed_total
            self.thaws += 1
            t0 = time.perf_counter()
            gc.unfreeze()
            found = gc.collect()  # freezes again on the way out (_collected)
            log.info("gc thaw: %d unreachable, %.0f ms", found, 1000 * (time.perf_counter() - t0))
