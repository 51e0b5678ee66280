"""One media slot's outgoing RTP timeline and its map to network time (pure, simulated-time tested).

Why: listeners must play a stream at the same network instant, and every one of them receives
the same RTP timestamps for a slot (only SSRC and sequence numbers are per subscriber). So the
server, which *is* the network clock, states once per slot which network time an RTP timestamp
was captured at; each listener plays that sample at `at + D` (the session's playout delay).

The map is the lower envelope of arrival time against RTP time: packets are never early, and
the earliest ones in each window show the capture clock with the least queueing in them. A line
fitted through the minima of the last windows follows a publisher whose sample clock drifts
against network time (sound cards are ±50 ppm), so listeners neither starve nor pile up.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from .rtp import TS_MOD, ts_delta


@dataclass(frozen=True, slots=True)
class ClockMap:
    """The sample with RTP timestamp `rtp_ts` was captured at network time `at`; `rate` ticks/s."""

    rtp_ts: int
    at: float
    rate: float

    def time_of(self, ts: int) -> float:
        return self.at + ts_delta(ts, self.rtp_ts) / self.rate


class SlotTimeline:
    """Rewrites one slot's timestamps into a timeline that is continuous across publishers, and
    keeps its `ClockMap`. `packet()` returns the outgoing timestamp and a new map when the map
    changed (tell the listeners)."""

    MAX_JUMP_S = 10.0  # a jump this large inside one source is a restart: rebase
    MAX_RATE_ERROR = 2e-4  # a fitted rate further than this from nominal is not believed
    MIN_FIT_SPAN = 20.0  # seconds of window minima before a rate is fitted (short fits are noise)
    RATE_STEP = 5e-6  # a rate change smaller than this (relative) is not republished

    def __init__(
        self,
        first_ts: int,
        clock_rate: int = 48000,
        window: float = 2.0,
        windows: int = 30,
        tolerance: float = 0.0005,
        max_age: float = 600.0,
    ) -> None:
        self.nominal = float(clock_rate)
        self.window = window
        self.tolerance = tolerance
        self.max_age = max_age
        self.map: ClockMap | None = None
        self._map_ext = 0  # extended timestamp of the map's anchor
        self._mapped_at = 0.0  # arrival time when the map was published
        self._source: object = None
        self._last_in = 0
        self._last_ext = first_ts - 1  # extended (unwrapped) outgoing timestamps
        self._offset = 0  # ext_out = ext_in + offset
        self._ext_in = 0
        self._last_arrival: float | None = None
        self._learning = True  # first window of a run: follow the running minimum directly
        self._win_start = 0.0
        self._win_min: tuple[float, int] | None = None  # (arrival - ext/nominal, ext)
        self._points: deque[tuple[int, float]] = deque(maxlen=windows)  # (ext, arrival) minima

    def packet(self, source: object, ts: int, arrival: float) -> tuple[int, ClockMap | None]:
        if source != self._source or abs(ts_delta(ts, self._last_in)) > self.MAX_JUMP_S * self.nominal:
            return self._rebase(source, ts, arrival)
        step = ts_delta(ts, self._last_in)
        ext = self._ext_in + step + self._offset
        if step > 0:
            self._last_in, self._ext_in = ts, self._ext_in + step
            self._last_ext = max(self._last_ext, ext)
            self._last_arrival = arrival
        return ext % TS_MOD, self._observe(ext, arrival)

    def _rebase(self, source: object, ts: int, arrival: float) -> tuple[int, ClockMap]:
        """A new run: continue the outgoing timeline by the time that passed, start a new map."""
        gap = 0 if self._last_arrival is None else max(0.0, arrival - self._last_arrival)
        ext = self._last_ext + 1 + round(gap * self.nominal)
        self._source, self._last_in, self._ext_in = source, ts, 0
        self._offset = ext
        self._last_ext, self._last_arrival = ext, arrival
        self._points.clear()
        self._learning, self._win_start, self._win_min = True, arrival, None
        return ext % TS_MOD, self._publish(ext, arrival, self.nominal, arrival)

    def _observe(self, ext: int, arrival: float) -> ClockMap | None:
        key = arrival - ext / self.nominal
        if self._win_min is None or key < self._win_min[0]:
            self._win_min = (key, ext)
        assert self.map is not None
        if self._learning:
            early = self._at(ext) - arrival  # arrived before its mapped capture time: map too late
            if early > self.tolerance:
                return self._publish(ext, arrival, self.map.rate, arrival)
        if arrival - self._win_start < self.window:
            return None
        key, at_ext = self._win_min
        self._points.append((at_ext, key + at_ext / self.nominal))
        self._learning, self._win_start, self._win_min = False, arrival, None
        now_ext = self._last_ext
        at, rate = self._fit(now_ext)
        moved = abs(at - self._at(now_ext)) > self.tolerance
        stale = arrival - self._mapped_at > self.max_age
        if moved or stale or abs(rate - self.map.rate) > self.RATE_STEP * self.nominal:
            return self._publish(now_ext, at, rate, arrival)
        return None

    def _fit(self, ext: int) -> tuple[float, float]:
        """The lower-envelope line at `ext`: least squares through the window minima."""
        pts = self._points
        if len(pts) < 3 or (pts[-1][0] - pts[0][0]) / self.nominal < self.MIN_FIT_SPAN:
            base = min(arr - (e - ext) / self.nominal for e, arr in pts)
            return base, self.nominal
        n = len(pts)
        mx = sum(e for e, _ in pts) / n
        my = sum(a for _, a in pts) / n
        sxx = sum((e - mx) ** 2 for e, _ in pts)
        sxy = sum((e - mx) * (a - my) for e, a in pts)
        slope = sxy / sxx if sxx > 0 else 1.0 / self.nominal
        rate = 1.0 / slope if slope > 0 else self.nominal
        if abs(rate / self.nominal - 1.0) > self.MAX_RATE_ERROR:
            rate = self.nominal
            slope = 1.0 / rate
        # the line through the lowest point with that slope: an envelope, not a mean
        base = min(a - (e - ext) * slope for e, a in pts)
        return base, rate

    def _at(self, ext: int) -> float:
        assert self.map is not None
        return self.map.at + (ext - self._map_ext) / self.map.rate

    def _publish(self, ext: int, at: float, rate: float, now: float) -> ClockMap:
        self.map = ClockMap(ext % TS_MOD, at, rate)
        self._map_ext, self._mapped_at = ext, now
        return self.map
