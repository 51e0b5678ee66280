"""Offset, delay and skew of the server clock from four-timestamp exchanges.

Queueing only ever adds delay, so the exchanges with the least delay carry the least error
(the NTP clock-filter insight), and that holds per direction. The estimator keeps a sliding window
of samples and, after removing the drift, takes the lower envelope of the up-trips (t1 - t0) and
the upper envelope of the down-trips (t2 - t3): the offset is their midpoint. Each envelope is the
best sample of its direction *after charging every sample for its age* (the drift left unmodelled
grows with it), so a one-way delay change, which only ever raises one direction's trips, leaves
the other envelope and the clean samples from before the change in charge. The drift (skew, the
rate difference between the local oscillator and the server's) is the slope through per-bin
envelope extremes, weighted against bins whose round trip stands above the window's best.

The same physics gives a consistency test: for every valid exchange, t1 - t0 >= offset >= t2 - t3.
A sample that crosses the window's envelopes is either corrupt or the local clock jumped
(suspension, step). It is held back; a run of such samples that agree with each other is a
discontinuity, and the window restarts from them (re-acquisition). A lone one is outvoted.
"""

from __future__ import annotations

import bisect
import math
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

    def invalid(self, max_delay: float) -> str | None:
        """Why this exchange cannot be a timing sample, or None. Non-finite stamps (a JSON
        `1e999` parses to Infinity in browsers), a server that answered before it was asked
        (t1 > t2), a reply before the request (t3 < t0), or a round trip beyond `max_delay`."""
        if not all(math.isfinite(x) for x in (self.t0, self.t1, self.t2, self.t3)):
            return "non-finite"
        if self.t1 > self.t2 or self.t3 < self.t0:
            return "disordered"
        d = self.delay
        if d < 0:
            return "negative-delay"
        if d > max_delay:
            return "absurd-delay"
        return None


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


PLAUSIBLE_PRIORS = 5.0  # a skew beyond this many prior spreads (1000 ppm) is no oscillator's


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
    age_charge: float = 3.0  # an envelope sample is charged this many skew standard errors x age
    wander: float = 1e-8  # ... plus wander·age²: frequency change the drift model cannot see (1/s)
    skew_rate_prior: float = 0.5e-6  # spread of the skew's rate of change (1/s): thermal drift
    congestion_factor: float = 4.0  # a bin's round trip this many typical spreads above the best
    congestion_min: float = 0.001  # ... and at least this much (s) means a changed path
    holdover_wander: float = 0.02e-6  # skew uncertainty growth while held over (1/s)
    max_delay: float = 30.0  # round trips beyond this are not timing samples (s)
    confirm: int = 3  # consecutive, mutually consistent samples that contradict the window → jump
    gap_scale: float = 5.0  # runner-up gap → error bound (calibrated: see _fit)
    tolerance: float = 50e-6  # slack of the consistency test beyond the error bounds (s)
    quarantine: int = 16  # contradicting samples held back at most
    asymmetry_memory: float = 600.0  # how long the best round trip is remembered (s)


class _Window:
    """The samples in local-time order, as rows (t0, t1, t2, t3) of one numpy array, so each
    fit reads them without rebuilding anything. Appends and drops at the front are O(1)."""

    def __init__(self, capacity: int):
        self._buf = np.empty((2 * capacity + 16, 4))
        self._lo = self._hi = 0

    def __len__(self) -> int:
        return self._hi - self._lo

    @property
    def rows(self) -> np.ndarray:
        return self._buf[self._lo : self._hi]

    def first_t3(self) -> float:
        return float(self._buf[self._lo, 3])

    def last_t3(self) -> float:
        return float(self._buf[self._hi - 1, 3])

    def add(self, s: Sample) -> None:
        """Append, or insert in order if a later reply overtook this one."""
        if self._hi == len(self._buf):
            n = len(self)
            self._buf[:n] = self._buf[self._lo : self._hi]
            self._lo, self._hi = 0, n
        row = (s.t0, s.t1, s.t2, s.t3)
        if len(self) and s.t3 < self.last_t3():
            k = self._lo + bisect.bisect_right(self._buf[self._lo : self._hi, 3].tolist(), s.t3)
            self._buf[k + 1 : self._hi + 1] = self._buf[k : self._hi].copy()
            self._buf[k] = row
        else:
            self._buf[self._hi] = row
        self._hi += 1

    def pop_first(self) -> None:
        self._lo += 1

    def delete(self, i: int) -> None:
        k = self._lo + i
        self._buf[k : self._hi - 1] = self._buf[k + 1 : self._hi].copy()
        self._hi -= 1

    def clear(self) -> None:
        self._lo = self._hi = 0


class ClockEstimator:
    def __init__(self, config: EstimatorConfig | None = None):
        self.config = config or EstimatorConfig()
        self._samples = _Window(self.config.window)  # local-time order; at most config.window
        self._held: deque[Sample] = deque(maxlen=self.config.quarantine)  # contradicting the window
        self._high_run = 0
        self._prior = (0.0, self.config.skew_prior)  # skew prior: (mean, standard deviation)
        self._clean = (0.0, self.config.skew_prior, 0.0)  # last skew fitted on a clean path (+ when)
        self._calm_scale = float("inf")  # the bins' round-trip spread on that clean path
        self._min_delay = 0.0  # the least round trip in the window
        self._floor_hint = 0.0  # ... and before the last restart, for the young window after it
        self._spread = 0.0  # median - least round trip in the window
        self._spread_hint = 0.0
        self.route_changes = 0
        self.rejected = 0  # invalid, or contradicting the window and outvoted
        self.discontinuities = 0  # window restarts: the local clock (or the server's) jumped
        self.last: Estimate | None = None
        self._best_delay = (float("inf"), 0.0)  # least envelope round trip seen, and when

    @property
    def span(self) -> float:
        """Seconds of local time covered by the window."""
        return self._samples.last_t3() - self._samples.first_t3() if len(self._samples) else 0.0

    @property
    def path_excess(self) -> float:
        """How far the envelopes' round trip stands above the best seen in the last
        `asymmetry_memory` s. Nothing two-way can tell whether that extra delay is one-way or
        symmetric, so half of it is a possible offset error (part of the clock's bound)."""
        return max(0.0, self.last.delay - self._best_delay[0]) if self.last else 0.0

    @property
    def suspicious(self) -> bool:
        """Samples are being held back: a discontinuity may be under way (probe fast)."""
        return bool(self._held)

    def add(self, sample: Sample) -> Estimate | None:
        """Take one exchange; returns the new estimate (None until enough samples)."""
        cfg = self.config
        if sample.invalid(cfg.max_delay):
            self.rejected += 1
            return self.last
        if len(self._samples) and sample.t3 < self._samples.last_t3() - cfg.max_delay:
            # The local clock went backwards between two replies (further than any reply can be
            # overtaken by a later one): nothing before is comparable.
            self._restart([sample])
            return self.last
        if self.last is not None and (not self._consistent(sample, self.last) or self._too_fast(sample)):
            self._held.append(sample)
            run = self._agreeing_run()
            if len(run) < cfg.confirm:
                return self.last
            # The first replies after a jump can straddle it (sent on one side, read on the
            # other) and look faster than the path: the path's floor survives a jump of the
            # clock, so start afresh from those of them that respect it (all of them, if the
            # whole run is faster: then the path itself changed).
            margin = max(cfg.tolerance, 0.25 * self._spread)
            fair = [x for x in run if x.delay >= self._min_delay - margin]
            delays = [x.delay for x in run]
            if not fair and max(delays) - min(delays) > max(cfg.tolerance, self._spread):
                return self.last  # straddlers disagreeing on the round trip: no new path, wait
            fresh = fair or run
            self._floor_hint = min([self._min_delay or math.inf, *(x.delay for x in fresh)])
            self._spread_hint = self._spread
            self._restart(fresh)
            return self.last
        self.rejected += len(self._held)  # a lone contradiction, outvoted by this sample
        self._held.clear()
        self._samples.add(sample)  # in local-time order even if a later reply overtook it
        while len(self._samples) and sample.t3 - self._samples.first_t3() > cfg.max_span:
            self._samples.pop_first()
        if len(self._samples) > cfg.window:
            self._thin()
        self._track_route(sample)
        self.last = self._fit(sample.t3) or self.last
        best, when = self._best_delay
        # (Only a plausible fit's: one with a wild skew can put the round trip below zero, which
        # remembered as the best would inflate `path_excess`, the error bound, for minutes.)
        if (
            self.last is not None
            and self._plausible(self.last)
            and (self.last.delay <= best or sample.t3 - when > cfg.asymmetry_memory)
        ):
            self._best_delay = (self.last.delay, sample.t3)
        return self.last

    def _plausible(self, est: Estimate) -> bool:
        """Whether a fit could describe real clocks: a round trip of at least zero and a skew
        within PLAUSIBLE_PRIORS spreads of real oscillators'. A starved host's few bins over a
        short span can fit a skew of percent (and with it a negative round trip)."""
        return est.delay >= 0 and abs(est.skew) <= PLAUSIBLE_PRIORS * self.config.skew_prior

    def _thin(self) -> None:
        """Drop one sample from the older half of a full window: the one least useful to either
        envelope (worst at its better direction). Fast probing through a long congestion
        episode must not push out the clean samples from before it."""
        old = self._samples.rows[: len(self._samples) // 2]
        up = old[:, 1] - old[:, 0]
        down = old[:, 3] - old[:, 2]  # the down-trip's delay side: smaller is better
        rank_up = np.argsort(np.argsort(up, kind="stable"), kind="stable")
        rank_down = np.argsort(np.argsort(down, kind="stable"), kind="stable")
        self._samples.delete(int(np.argmax(np.minimum(rank_up, rank_down))))

    def _consistent(self, s: Sample, est: Estimate) -> bool:
        """Whether `s` fits the window: its up-trip above the down envelope and its down-trip
        below the up envelope (t1 - t0 >= offset >= t2 - t3), and neither trip far better than
        its own envelope (no trip is faster than the path's fastest), within the error bounds
        and the drift since the estimate. A reply read after the device woke, for a request
        sent before it slept, fails the second test: its round trip reads short by the nap."""
        cfg = self.config
        off = est.offset_at(s.t3)
        age = abs(s.t3 - est.at_local)
        drift = 3 * est.skew_error * age + cfg.wander * age * age + cfg.tolerance
        tol = 2 * est.error + drift
        up, down = s.t1 - s.t0, s.t2 - s.t3
        lo, hi = off + est.delay / 2, off - est.delay / 2
        if up < hi - tol or down > lo + tol:
            return False
        # (At least half the path's round-trip spread: on a jittery real path the envelopes'
        # own error can understate what a genuine sample may beat them by.)
        slack = max(ENVELOPE_SLACK * est.error, self._spread / 2) + drift
        return up >= lo - slack and down <= hi + slack

    def _too_fast(self, s: Sample) -> bool:
        """A round trip under the fastest in the window. Queueing only adds delay, so this
        is not the path: the local clock stood still while the exchange was in flight (the
        device fell asleep or woke up mid-exchange) and the reply's t3 reads early. Its down-trip
        looks better than any real one and would bias the envelope for the whole window."""
        # A young window (just restarted) judges by the path's floor from before the jump. Real
        # round trips fall below the window's least only by a little of the path's spread.
        young = len(self._samples) < 8
        floor, spread = (self._floor_hint, self._spread_hint) if young else (self._min_delay, self._spread)
        return floor > 0 and s.delay < floor - max(self.config.tolerance, 0.25 * spread)

    def _agreeing_run(self) -> list[Sample]:
        """The newest held samples that are consistent with each other (about one offset),
        leaving out any whose round trip is far faster than the others' (see `_too_fast`)."""
        held = list(self._held)
        typical = _median([x.delay for x in held])
        held = [x for x in held if x.delay >= FAST_FACTOR * typical - self.config.tolerance]
        if not held:
            return []
        run = [held[-1]]
        for s in reversed(held[:-1]):
            cand = [s, *run]
            up = min(x.t1 - x.t0 for x in cand)
            down = max(x.t2 - x.t3 for x in cand)
            slack = self.config.tolerance + self._prior[1] * (cand[-1].t3 - cand[0].t3)
            if up < down - slack:
                break
            run = cand
        return run

    def _restart(self, samples: list[Sample]) -> None:
        """Begin a new window (re-acquisition). The oscillator's rate survives a jump of its
        reading, so the learned skew becomes the prior of the new fit."""
        if self.last is not None:
            # Unless the fit it ended with was implausible: carried as a tight prior, a skew of
            # percent would make every later sample contradict the window again (restarting it
            # endlessly).
            self._prior = (
                (self.last.skew, max(self.last.skew_error, 1e-6))
                if self._plausible(self.last)
                else (0.0, self.config.skew_prior)
            )
        self.discontinuities += 1
        self._clean = (*self._prior, samples[-1].t3)
        self._calm_scale = float("inf")
        self._samples.clear()
        self._held.clear()
        self._high_run = 0
        self._best_delay = (float("inf"), 0.0)
        self.last = None
        for s in samples:
            self._samples.add(s)
        self.last = self._fit(samples[-1].t3)

    def _track_route(self, sample: Sample) -> None:
        cfg = self.config
        rows = self._samples.rows
        delays = (rows[:, 3] - rows[:, 0]) - (rows[:, 2] - rows[:, 1])
        dmin = float(delays.min())
        self._min_delay = dmin
        spread = float(np.median(delays) - dmin)
        self._spread = spread
        if sample.delay > dmin + cfg.route_change_factor * spread + cfg.route_change_min:
            self._high_run += 1
            if self._high_run >= cfg.route_change_run:
                # The path got slower. Old samples stay valid for the envelopes (a symmetric change
                # does not move the offset); the flag makes the clock probe faster to confirm.
                self._high_run = 0
                self.route_changes += 1
        else:
            self._high_run = 0

    def _fit(self, now_local: float) -> Estimate | None:
        cfg = self.config
        n = len(self._samples)
        if n == 0:
            return None
        rows = self._samples.rows
        t, up, down = rows[:, 3], rows[:, 1] - rows[:, 0], rows[:, 2] - rows[:, 3]
        skew, skew_se, curv, curv_se = self._drift(t, up, down, now_local)
        # One-way envelopes: t1 - t0 = offset + up delay, t2 - t3 = offset - down delay. Taking the
        # minimum of the first and the maximum of the second separately (after removing the drift)
        # needs one quiet sample per direction, not one quiet round trip: far more robust under
        # heavy-tailed queueing than the best round trip alone. Queueing only ever adds delay, so
        # an older sample is as good as a new one but for the drift left unmodelled: charge each
        # sample that (skew uncertainty x age, plus wander) and take the best charged one. A
        # one-way congestion episode then leaves the clean samples from before it in charge for
        # as long as they beat the congested ones; a permanent change wins once they age.
        age = now_local - t
        charge = cfg.age_charge * (skew_se * age + curv_se * age**2) + cfg.wander * age**2
        drift = skew * (t - now_local) + curv * (t - now_local) ** 2
        up_c, down_c = up - drift + charge, down - drift - charge
        i_up, i_down = np.argsort(up_c, kind="stable")[:2], np.argsort(-down_c, kind="stable")[:2]
        lo, hi = float(up_c[i_up[0]]), float(down_c[i_down[0]])
        # Statistical error: the charges of the two samples used, plus how far the runners-up
        # stand (a lone quiet sample is less certain than a cluster of them). The gap to the
        # runner-up is about the best sample's own queueing on average; `gap_scale` makes it a
        # bound that holds at ≥ 99 % of instants in every benchmark scenario (docs/benchmarks.md).
        gaps = (up_c[i_up[-1]] - lo) + (hi - down_c[i_down[-1]]) if n > 1 else lo - hi
        error = (charge[i_up[0]] + charge[i_down[0]] + cfg.gap_scale * gaps) / 2 + 1e-6
        # The envelopes include their charges: remove them for the offset and the delay.
        lo_raw, hi_raw = lo - float(charge[i_up[0]]), hi + float(charge[i_down[0]])
        return Estimate(now_local, (lo_raw + hi_raw) / 2, skew, lo_raw - hi_raw, float(error), n, skew_se)

    def _drift(
        self, t: np.ndarray, up: np.ndarray, down: np.ndarray, now: float
    ) -> tuple[float, float, float, float]:
        """Drift of the server clock against the local one: offset(x) ≈ offset(now) +
        skew·(x - now) + curv·(x - now)², from the one-way delay envelopes over time (after Moon,
        Skelly and Towsley's skew estimation). Per time bin, the fastest up-trip and the fastest
        down-trip lie closest to the true offset curve, so a curve fitted through their midpoints
        ignores queueing. Fitting the midpoints (rather than each envelope with its own
        intercept) makes a symmetric route change inside the window invisible: it moves the two
        envelopes by opposite amounts. A one-way change moves the midpoint by half of what it
        adds to one direction, and a slow one-way ramp is, from two-way timestamps alone,
        indistinguishable from drift. What tells them apart is the round trip, which drift
        leaves alone: bins on a changed path are weighted down, and while the newest bin is on
        one the skew learned before is held over.

        The fit is Bayesian: the skew has a prior (spread of real oscillators, or the skew
        learned before a restart) and so has its rate of change (thermal drift), so a short or
        noisy baseline yields a cautious slope and the curvature is only believed when the data
        insist. Returns (skew at `now`, its standard error, curv, its standard error)."""
        cfg = self.config
        mean, prior = self._prior
        quiet = (mean, prior, 0.0, 0.0)
        n = len(t)
        bins = min(cfg.skew_bins, n // 2)
        if bins < 3 or t[-1] - t[0] < cfg.min_skew_span:
            return quiet
        # The window is in time order, so each bin is a contiguous slice.
        starts = np.searchsorted(t, np.linspace(t[0], t[-1] + 1e-9, bins + 1), side="left")
        pts: list[tuple[float, float, float, float]] = []
        for b in range(bins):
            lo_i, hi_i = int(starts[b]), int(starts[b + 1])
            if hi_i <= lo_i:
                continue
            i = lo_i + int(np.argmin(up[lo_i:hi_i]))
            j = lo_i + int(np.argmax(down[lo_i:hi_i]))
            # up[i] = a_up + drift(t[i]) + queueing, down[j] = a_down + drift(t[j]) - queueing:
            # their midpoint follows the drift at (t[i] + t[j])/2 up to noise.
            pts.append((float(t[i] - now), float(t[j] - now), float(up[i]), float(down[j])))
        if len(pts) < 3:
            return quiet
        # A dozen bins: plain Python floats, summed in order (the JavaScript twin does the same).
        ti = [q[0] for q in pts]
        tj = [q[1] for q in pts]
        ui = [q[2] for q in pts]
        dj = [q[3] for q in pts]
        x = [(a + b) / 2 for a, b in zip(ti, tj, strict=True)]
        y = [(a + b) / 2 for a, b in zip(ui, dj, strict=True)]
        sol = self._posterior(x, y, [1.0] * len(x), 0.0)
        excess: list[float] = []
        scale = 0.0
        for _ in range(2):  # the round trips need the curve, and the curve the weights
            # Drift moves both directions alike and leaves the round trip alone; every delay
            # change moves the round trip. A bin whose best round trip stands above the window's
            # best is on a changed path, where a one-way change (bufferbloat, a flapping route)
            # is indistinguishable from drift: weight it down (Cauchy weights, scaled by the
            # spread of the calmer half of the bins).
            s, c = sol[0], sol[1]
            rtt = [
                (u - d) - (s * (a - b) + c * (a * a - b * b))
                for a, b, u, d in zip(ti, tj, ui, dj, strict=True)
            ]
            best = min(rtt)
            excess = [r - best for r in rtt]
            # (When most of the window is congested its calmer half is too: the spread seen
            # on the calm path before holds then.)
            scale = max(min(_median(sorted(excess)[: max(2, len(excess) // 2)]), 2 * self._calm_scale), 10e-6)
            w = [1.0 / (1.0 + (e / scale) * (e / scale)) for e in excess]
            # However well a few heavily weighted bins fit, the calm bins' midpoints scatter
            # about as much as their robust spread around the curve: that floor keeps the priors
            # in force.
            resid = [
                yy - (sol[4] + s * xx + c * xx * xx) for xx, yy, ww in zip(x, y, w, strict=True) if ww >= 0.5
            ]
            mid = _median(resid)
            spread = 1.4826 * _median([abs(r - mid) for r in resid])
            floor = spread * spread
            sol = self._posterior(x, y, w, floor)
        if excess[-1] > max(cfg.congestion_factor * scale, cfg.congestion_min):
            # The newest bin is congested: hold the skew learned on the clean path over
            # (holdover, as a disciplined oscillator does when its reference degrades), its
            # uncertainty growing at the rate real oscillators wander.
            skew, se, since = self._clean
            age = now - since
            grown = cfg.holdover_wander * age
            return skew, math.sqrt(se * se + grown * grown), 0.0, 0.0
        self._clean = (sol[0], sol[2], now)
        self._calm_scale = scale
        return sol[0], sol[2], sol[1], sol[3]

    def _posterior(
        self, x: list[float], y: list[float], w: list[float], floor: float
    ) -> tuple[float, float, float, float, float]:
        """Weighted Bayesian fit of y = a + s·x + c·x² with priors on s and c (flat on a): a
        least-squares pass gives the residual scale (at least `floor`, per unit weight), against
        which the priors then weigh.
        Returns (s, c, se(s), se(c), a). The 3 x 3 solve is written out so the JavaScript twin
        computes the same numbers."""
        mean, prior = self._prior
        c_prior = self.config.skew_rate_prior / 2  # c is half the skew's rate of change
        sw = sx = sxx = sxxx = sxxxx = sy = sxy = sxxy = sww = 0.0
        for xx, yy, ww in zip(x, y, w, strict=True):
            x2 = xx * xx
            sw += ww
            sx += ww * xx
            sxx += ww * x2
            sxxx += ww * x2 * xx
            sxxxx += ww * x2 * x2
            sy += ww * yy
            sxy += ww * xx * yy
            sxxy += ww * x2 * yy
            sww += ww * ww
        n_eff = sw * sw / sww
        noise = 0.0
        out = (mean, 0.0, prior, c_prior, sy / sw)
        for _ in range(2):
            # Pass 1 (noise 0): plain weighted least squares, priors only to keep it solvable.
            # Pass 2: the residual variance per unit weight from pass 1 sets the data's weight.
            k = 1.0 / noise if noise else 1e30
            a = [
                [sw * k, sx * k, sxx * k],
                [sx * k, sxx * k + 1 / (prior * prior), sxxx * k],
                [sxx * k, sxxx * k, sxxxx * k + 1 / (c_prior * c_prior)],
            ]
            rhs = [sy * k, sxy * k + mean / (prior * prior), sxxy * k]
            inv = _inverse3(a)
            if inv is None:
                return out
            a0, a1, a2 = (inv[r][0] * rhs[0] + inv[r][1] * rhs[1] + inv[r][2] * rhs[2] for r in range(3))
            out = (a1, a2, math.sqrt(max(inv[1][1], 0.0)), math.sqrt(max(inv[2][2], 0.0)), a0)
            ssr = 0.0
            for xx, yy, ww in zip(x, y, w, strict=True):
                r = yy - (a0 + a1 * xx + a2 * xx * xx)
                ssr += ww * r * r
            noise = max(ssr / max(n_eff - 3.0, 1.0), floor, 1e-18)
        return out


FAST_FACTOR = 0.75  # a round trip under this share of the window's least is not the path's
ENVELOPE_SLACK = 4.0  # a trip may beat its envelope by this many error bounds, not more

# Scalars are squared as x * x, never x ** 2: CPython's pow() can differ from x * x in the last bit,
# and the JavaScript twin (where x ** 2 is x * x) must compute the same numbers.


def _median(xs: list[float]) -> float:
    """Median as numpy computes it (mean of the two middle values for an even count)."""
    s = sorted(xs)
    m = len(s) // 2
    return s[m] if len(s) % 2 else (s[m - 1] + s[m]) / 2


def _inverse3(m: list[list[float]]) -> list[list[float]] | None:
    """Inverse of a 3 x 3 matrix by cofactors (None if singular)."""
    (a, b, c), (d, e, f), (g, h, i) = m
    co = [
        [e * i - f * h, -(d * i - f * g), d * h - e * g],
        [-(b * i - c * h), a * i - c * g, -(a * h - b * g)],
        [b * f - c * e, -(a * f - c * d), a * e - b * d],
    ]
    det = a * co[0][0] + b * co[0][1] + c * co[0][2]
    if not det or not math.isfinite(det):
        return None
    return [[co[k][r] / det for k in range(3)] for r in range(3)]
