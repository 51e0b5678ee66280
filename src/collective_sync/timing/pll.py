"""A network clock disciplined to the server by a type-II phase-locked loop.

The mapping local → network time is piecewise linear: network = local + phase(local), with
phase advancing at `freq + slew`. Two integrators make the loop type II: the frequency
correction integrates the phase error (so a constant oscillator drift leaves no residual
error), and the phase integrates the frequency. Phase errors are removed by slewing at a
bounded rate, never by stepping, once the clock has locked; before the first lock (the
acquisition burst on join) it may step to each new estimate, as NTP does at start-up.
Because |freq + slew| ≪ 1, network time is continuous and strictly increasing.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from .estimator import ClockEstimator, Estimate, EstimatorConfig, Sample


class LockState(Enum):
    ACQUIRING = "acquiring"  # no estimate yet, or still in the join burst: may step
    LOCKED = "locked"  # slewing only


@dataclass
class PllConfig:
    max_slew: float = 2000e-6  # phase correction rate bound (2 ms per second)
    min_slew_time: float = 0.5  # spread a correction over at least this long (s) on quiet paths
    max_slew_time: float = 4.0  # ... and up to this long on noisy ones
    freq_time_constant: float = 30.0  # integral path of the loop (s): slow, so noise averages out
    fll_gain: float = 0.2  # share of the estimator's regression skew taken per update (FLL assist)
    fll_max_skew_error: float = 20e-6  # ... once its standard error is below this
    max_freq: float = 1000e-6  # |frequency correction| bound (crystals are within ±200 ppm)
    acquire_samples: int = 6  # exchanges before the first lock
    acquire_error: float = 0.002  # and the estimator's error must be below this (s)
    burst_interval: float = 0.02  # probe spacing during a burst (s)
    burst_length: int = 8
    settle_interval: float = 0.05  # probe spacing after the burst until the frequency is learned
    settle_skew_error: float = 2e-6  # "learned": skew standard error below this
    max_settle: float = 20.0  # ... or after this many seconds of samples, whichever comes first
    locked_interval: float = 1.0  # probe spacing while locked on a quiet path (s)
    min_locked_interval: float = 0.1  # ... and at most this often on the noisiest paths
    quiet_error: float = 15e-6  # paths whose typical estimator error is above this probe faster
    reburst_error: float = 0.001  # error bound growth (s) that triggers a fresh burst


class DisciplinedClock:
    """Pure: every method takes the local time explicitly."""

    def __init__(self, config: PllConfig | None = None, estimator: EstimatorConfig | None = None):
        self.config = config or PllConfig()
        self.estimator = ClockEstimator(estimator)
        self.state = LockState.ACQUIRING
        self.freq = 0.0  # frequency correction (s/s)
        self.steps = 0  # phase steps taken (only while acquiring)
        self.last_error = float("inf")  # |phase - estimate| at the last update
        self._seg_local = 0.0  # the current linear segment starts here (local time)
        self._seg_phase = 0.0  # ... with this phase
        self._slew = 0.0
        self._slew_until = 0.0  # local time at which the slew ends
        self._have_phase = False
        self._last_update: float | None = None
        self._burst_left = self.config.burst_length
        self._samples = 0
        self._last_route_changes = 0
        self._typical_error = self.config.quiet_error  # slow average of the estimator's error
        self.rebursts = 0

    # --- mapping ---------------------------------------------------------------------------

    def phase(self, local: float) -> float:
        dt = local - self._seg_local
        slewed = min(max(dt, 0.0), self._slew_until - self._seg_local) if self._slew else 0.0
        return self._seg_phase + self.freq * dt + self._slew * slewed

    def to_network(self, local: float) -> float:
        return local + self.phase(local)

    def to_local(self, network: float) -> float:
        """Inverse of `to_network` (exact: the mapping is piecewise linear and increasing)."""
        rate = 1.0 + self.freq
        if self._slew and network >= self.to_network(self._seg_local):
            # Network time at the end of the slew decides which piece `network` falls on.
            end_net = self.to_network(self._slew_until)
            if network <= end_net:
                return self._seg_local + (network - self.to_network(self._seg_local)) / (rate + self._slew)
            return self._slew_until + (network - end_net) / rate
        return self._seg_local + (network - self.to_network(self._seg_local)) / rate

    @property
    def locked(self) -> bool:
        return self.state is LockState.LOCKED

    @property
    def freq_ppm(self) -> float:
        return self.freq * 1e6

    def offset(self, local: float) -> float:
        """network - local now (the current phase)."""
        return self.phase(local)

    @property
    def error(self) -> float:
        """Estimated network-time error: estimator error plus what is still being slewed."""
        est = self.estimator.last
        return (est.error if est else float("inf")) + (0.0 if self.locked else self.last_error)

    # --- discipline ------------------------------------------------------------------------

    def add_sample(self, sample: Sample) -> Estimate | None:
        """Feed one exchange (taken at local time `sample.t3`); updates the loop."""
        est = self.estimator.add(sample)
        self._samples += 1
        if self._burst_left > 0:
            self._burst_left -= 1
        if est is not None:
            self._update(est, sample.t3)
        return est

    def _update(self, est: Estimate, now: float) -> None:
        cfg = self.config
        target = est.offset_at(now)
        if self.state is LockState.ACQUIRING:
            self._rebase(now, target)
            self.steps += 1
            self.last_error = 0.0
            if self._samples >= cfg.acquire_samples and est.error < cfg.acquire_error:
                self.state = LockState.LOCKED
            self._last_update = now
            return
        current = self.phase(now)
        err = target - current
        self.last_error = abs(err)
        last = self._last_update if self._last_update is not None else now
        dt = now - last
        if dt > 0:
            # Integral path (type II): frequency integrates the phase error.
            self.freq += err * dt / cfg.freq_time_constant**2
        # Frequency-locked assist, as in NTP's hybrid loop: the regression slope over a long
        # baseline is a direct, low-noise measurement of the drift the integrator chases. Its
        # weight falls with its uncertainty (inverse variance) beyond fll_max_skew_error.
        trust = min(1.0, (cfg.fll_max_skew_error / max(est.skew_error, 1e-12)) ** 2)
        self.freq += cfg.fll_gain * trust * (est.skew - self.freq)
        self.freq = max(-cfg.max_freq, min(cfg.max_freq, self.freq))
        self._rebase(now, current)
        # Phase time constant grows with the path's noise: quiet paths track tightly, noisy ones
        # average several estimates instead of following each one.
        noise = self._typical_error / cfg.quiet_error
        tau = min(cfg.max_slew_time, max(cfg.min_slew_time, cfg.min_slew_time * noise))
        duration = max(abs(err) / cfg.max_slew, tau)
        self._slew = err / duration
        self._slew_until = now + duration
        self._last_update = now
        # A fresh burst when the path changed or the error bound grew well past its usual level.
        grew = est.error > max(cfg.reburst_error, 4.0 * self._typical_error)
        if self.estimator.route_changes != self._last_route_changes or grew:
            self._last_route_changes = self.estimator.route_changes
            self._burst_left = cfg.burst_length
            self.rebursts += 1
        self._typical_error += 0.05 * (min(est.error, 4.0 * self._typical_error) - self._typical_error)

    def _rebase(self, now: float, phase: float) -> None:
        self._seg_local, self._seg_phase = now, phase
        self._slew, self._slew_until = 0.0, now
        self._have_phase = True

    def next_probe_interval(self) -> float:
        """Quick burst on join and after trouble (route change, error growth); slow when locked."""
        if self.state is LockState.ACQUIRING or self._burst_left > 0:
            return self.config.burst_interval
        est = self.estimator.last
        settling = est is None or est.skew_error > self.config.settle_skew_error
        if settling and self.estimator.span < self.config.max_settle:
            return self.config.settle_interval
        # Noisy paths need more exchanges for a quiet sample per direction: probe faster there.
        cfg = self.config
        scaled = cfg.locked_interval * cfg.quiet_error / max(self._typical_error, 1e-9)
        return min(cfg.locked_interval, max(cfg.min_locked_interval, scaled))
