"""Admission: joins and WebSocket upgrades wait their turn in a join storm.

Ten thousand people opening a ceremony's link within seconds means ten thousand upgrades and
joins, each a fraction of a millisecond. Run as they arrive, one event-loop turn can hold
hundreds of them, and members already in the session get their updates only after that turn.
Queued here, at most `budget` seconds of them run per turn (`defer` schedules the next turn's
share after whatever the loop already has to do, flushes included), so members keep their
latency and joiners wait in line instead. When turns are long (a fan-out to thousands takes
tens of milliseconds), a fixed budget would starve the joiners: the budget grows with the
turn (`share` of the last flush), so joins keep a fixed share of the loop's time and members'
latency grows by at most that share. Free of I/O: the clock and `defer` are given.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable

log = logging.getLogger("collective_sync.admission")

Job = Callable[[], None]


class Admission:
    def __init__(
        self,
        budget: float,
        defer: Callable[[Job], object] | None = None,
        clock: Callable[[], float] = time.perf_counter,
        turn: Callable[[], float] = lambda: 0.0,
        share: float = 0.5,
    ):
        self.budget = budget
        self.turn = turn  # how long the loop's last fan-out took (seconds)
        self.share = share
        self.defer = defer  # None: no event loop (unit tests of the node): jobs run at once
        self.clock = clock
        self._queue: deque[Job] = deque()
        self._scheduled = False
        self.admitted = 0  # jobs run, for metrics

    def __len__(self) -> int:
        return len(self._queue)

    def submit(self, job: Job) -> None:
        """Run `job` in its turn (in submission order)."""
        if self.defer is None:
            self.admitted += 1
            job()
            return
        self._queue.append(job)
        if not self._scheduled:
            self._scheduled = True
            self.defer(self._drain)

    def _drain(self) -> None:
        self._scheduled = False
        queue = self._queue
        end = self.clock() + max(self.budget, self.share * self.turn())
        while queue:
            job = queue.popleft()
            self.admitted += 1
            try:
                job()
            except Exception:  # one bad job must not stall everyone behind it
                log.exception("admission job failed")
            if self.clock() >= end:
                break
        if queue:
            self._scheduled = True
            assert self.defer is not None
            self.defer(self._drain)
