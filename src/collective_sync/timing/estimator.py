"""Offset, delay and skew of the server clock from four-timestamp exchanges.

Queueing only ever adds delay, so the exchanges with the least delay carry the least error
(the NTP clock-filter insight), and that holds per direction. The estimator keeps a sliding window
of samples and, after removing the drift, takes the lower envelope of the up-trips (t1 - t0) and
the upper envelope of the down-trips (t2 - t3): the offset is their midpoint. The drift (skew,
the rate difference between the local oscillator and the server's) is the slope through the
per-bin envelope extremes. A run of samples far above the minimum flags a path change, on which
the clock probes faster; a symmetric one moves neither the offset nor the slope.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Sample:
    """One exchange: t0/t3 on the local clock, t1/t2 on the server clock (seconds)."""

    t0: float
    t1: float
    t2: float
    t3: float

    @property
    def offset(self) -> float:
        return ((self.t1 - self.t0) + (self.t2 - self.t3)) / 2

    @property
    def delay(self) -> float:
        return (self.t3 - self.t0) - (self.t2 - self.t1)


@dataclass(frozen=True, slots=True)
class Estimate:
    """Server time ≈ local time + offset + skew·(local - at_local), within about `error`."""

    at_local: float  # the local time the estimate refers to
    offset: float  # seconds
    skew: float  # dimensionless rate difference (1e-6 = 1 ppm)
    delay: float  # the minimum round trip in the window
    error: float  # statistical error of `offset` (not the unobservable path asymmetry)
    samples: int  # how many samples the envelopes used
    skew_error: float = 0.0  # standard error of `skew`

    @property
    def skew_ppm(self) -> float:
        return self.skew * 1e6

    @property
    def bound(self) -> float:
        """Worst case including path asymmetry, which no two-way exchange can observe: delay/2."""
        return self.delay / 2 + self.error

    def offset_at(self, local: float) -> float:
        return self.offset + self.skew * (local - self.at_local)


@dataclass
class EstimatorConfig:
    window: int = 2048  # samples kept: enough that max_span, not this, bounds the fastest probing
    route_change_run: int = 6  # consecutive samples this far above the minimum → new path
    route_change_factor: float = 4.0  # "far above": delay > min + factor·(typical spread) + ...
    route_change_min: float = 0.002  # ... at least this much (s)
    max_span: float = 120.0  # seconds of samples in the fit (older ones age out)
    min_skew_span: float = 0.5  # seconds of baseline before any slope is fitted
    skew_bins: int = 16  # time bins for the envelope regression
    skew_prior: float = 200e-6  # spread of real oscillators' rate error (crystals: ±200 ppm)
    min_horizon: float = 1.0  # the envelopes always look back at least this far (s)
    drift_budget: float = 50e-6  # ... and further while skew uncertainty x age stays below this (s)


class ClockEstimator:
    def __init__(self, config: EstimatorConfig | None = None):
        self.config = config or EstimatorConfig()
        self._samples: deque[Sample] = deque(maxlen=self.config.window)
        self._high_run = 0
        self.route_changes = 0
        self.rejected = 0
        self.last: Estimate | None = None

    @property
    def span(self) -> float:
        """Seconds of local time covered by the window."""
        return self._samples[-1].t3 - self._samples[0].t3 if self._samples else 0.0

    def add(self, sample: Sample) -> Estimate | None:
        """Take one exchange; returns the new estimate (None until enough samples)."""
        if sample.delay < 0 or sample.t3 < sample.t0:
            self.rejected += 1  # impossible timing: a clock stepped under us or a bogus reply
            return self.last
        cfg = self.config
        self._samples.append(sample)
        while self._samples and sample.t3 - self._samples[0].t3 > cfg.max_span:
            self._samples.popleft()
        delays = np.fromiter((s.delay for s in self._samples), float, len(self._samples))
        dmin = float(delays.min())
        spread = float(np.median(delays) - dmin)
        if sample.delay > dmin + cfg.route_change_factor * spread + cfg.route_change_min:
            self._high_run += 1
            if self._high_run >= cfg.route_change_run:
                # The path got slower. Old samples stay valid for the envelopes (a symmetric change
                # does not move the offset); the flag makes the clock probe faster to confirm.
                self._high_run = 0
                self.route_changes += 1
        else:
            self._high_run = 0
        self.last = self._fit(sample.t3) or self.last
        return self.last

    def _fit(self, now_local: float) -> Estimate | None:
        cfg = self.config
        n = len(self._samples)
        if n == 0:
            return None
        arr = np.array([(s.t3, s.t1 - s.t0, s.t2 - s.t3) for s in self._samples])
        t, up, down = arr[:, 0], arr[:, 1], arr[:, 2]
        skew, skew_se = self._skew(t, up, down)
        # One-way envelopes: t1 - t0 = offset + up delay, t2 - t3 = offset - down delay. Taking the
        # minimum of the first and the maximum of the second separately (after removing the drift)
        # needs one quiet sample per direction, not one quiet round trip: far more robust under
        # heavy-tailed queueing than the best round trip alone.
        drift = skew * (t - now_local)
        up_d, down_d = up - drift, down - drift
        # Queueing only ever adds delay, so a longer look-back can only sharpen the envelopes; what
        # limits it is the drift left unmodelled (skew uncertainty x age). Look back at least as
        # far as that stays within the drift budget. (A short window full of uniformly delayed
        # samples looks precise but is biased: never prefer it for its small spread.) On heavy-
        # tailed paths the envelopes of that look-back can still be far noisier than the budget:
        # keep doubling it while the error bound falls, i.e. while the sharper envelopes gain more
        # than the added drift uncertainty costs.
        horizon = min(cfg.max_span, max(cfg.min_horizon, cfg.drift_budget / max(skew_se, 1e-12)))
        lo, hi, error, used = self._envelopes(t, up_d, down_d, now_local, horizon, skew_se)
        while horizon < cfg.max_span and used < n:
            horizon = min(cfg.max_span, 2 * horizon)
            cand = self._envelopes(t, up_d, down_d, now_local, horizon, skew_se)
            if cand[2] >= error:
                break
            lo, hi, error, used = cand
        return Estimate(now_local, (lo + hi) / 2, skew, lo - hi, error, used, skew_se)

    @staticmethod
    def _envelopes(
        t: np.ndarray, up_d: np.ndarray, down_d: np.ndarray, now_local: float, horizon: float, skew_se: float
    ) -> tuple[float, float, float, int]:
        """(up envelope, down envelope, error bound, samples used) over the last `horizon` s."""
        use = np.flatnonzero(t >= now_local - horizon)
        u, d = up_d[use], down_d[use]
        i_up, i_down = np.argsort(u, kind="stable")[:2], np.argsort(-d, kind="stable")[:2]
        lo, hi = u[i_up[0]], d[i_down[0]]
        gaps = (u[i_up[-1]] - lo) + (hi - d[i_down[-1]]) if use.size > 1 else lo - hi
        age = now_local - min(t[use][i_up[0]], t[use][i_down[0]])
        return float(lo), float(hi), float(gaps / 2 + skew_se * age + 1e-6), int(use.size)

    def _skew(self, t: np.ndarray, up: np.ndarray, down: np.ndarray) -> tuple[float, float]:
        """Rate difference from the one-way delay envelopes over time (after Moon, Skelly and
        Towsley's skew estimation): per time bin, the fastest up-trip and the fastest down-trip
        lie closest to the true offset line, so a slope fitted through their midpoints ignores
        queueing. Fitting the midpoints (rather than each envelope with its own intercept) makes
        a symmetric route change inside the window invisible to the slope: it moves the two
        envelopes by opposite amounts. The slope is shrunk toward zero by its standard error
        against the prior spread of real oscillators, so a short or noisy baseline yields a
        cautious slope. Returns (skew, remaining uncertainty)."""
        cfg = self.config
        prior = cfg.skew_prior
        n = len(t)
        bins = min(cfg.skew_bins, n // 2)
        if bins < 3 or t[-1] - t[0] < cfg.min_skew_span:
            return 0.0, prior
        edges = np.linspace(t[0], t[-1] + 1e-9, bins + 1)
        idx = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, bins - 1)
        pts_t: list[float] = []
        pts_y: list[float] = []
        for b in range(bins):
            m = np.flatnonzero(idx == b)
            if not m.size:
                continue
            i, j = m[np.argmin(up[m])], m[np.argmax(down[m])]
            # up[i] = a_up + skew*t[i] + queueing, down[j] = a_down + skew*t[j] - queueing, so their
            # midpoint is (a_up + a_down)/2 + skew*(t[i] + t[j])/2 + noise: exactly linear. A
            # symmetric route change moves a_up and a_down by opposite amounts, not the midpoint.
            pts_t.append((t[i] + t[j]) / 2)
            pts_y.append((up[i] + down[j]) / 2)
        tt, yy = np.array(pts_t), np.array(pts_y)
        if len(tt) < 3:
            return 0.0, prior
        tc, yc = tt - tt.mean(), yy - yy.mean()
        var = float((tc**2).sum())
        if var <= 0:
            return 0.0, prior
        slope = float((tc * yc).sum() / var)
        resid = yc - slope * tc
        se2 = float((resid**2).sum() / max(len(tt) - 2, 1) / var)
        shrink = prior**2 / (prior**2 + se2)
        return slope * shrink, float(np.sqrt(shrink * se2))
