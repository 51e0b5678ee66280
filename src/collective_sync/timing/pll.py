"""A network clock disciplined to the server by a type-II phase-locked loop.

The mapping local → network time is piecewise linear: network = local + phase(local), with
phase advancing at `freq + slew`. Two integrators make the loop type II: the frequency
correction integrates the phase error (so a constant oscillator drift leaves no residual
error), and the phase integrates the frequency. Small phase errors are removed by slewing at a
bounded rate, never by stepping, once the clock has locked.

Discontinuities (policy, after chrony's `makestep` and Ableton Link's timeline reset): when the
estimator finds that the local clock jumped (a suspended device, a stepped clock) the loop goes
back to acquisition, keeping its frequency. A correction larger than `step_threshold`, or any
correction while acquiring, is applied at once: forward by a step, backward by a hold (network
time runs at `hold_rate`, 1 % speed, until the error is gone). Network time never goes
backwards once it has been read, even when the local clock itself is set back (`read`). Every
step, hold and re-acquisition is announced as a `ClockEvent`, so players can re-anchor audio.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import Enum

from .estimator import ClockEstimator, Estimate, EstimatorConfig, Sample


class LockState(Enum):
    ACQUIRING = "acquiring"  # joining or re-acquiring: every correction is a step or a hold
    LOCKED = "locked"  # bound within 1 ms: slews, steps/holds only beyond step_threshold


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
    acquire_error: float = 0.001  # and the whole error bound must be within this (s)
    burst_interval: float = 0.02  # probe spacing during a burst (s)
    burst_length: int = 8
    settle_interval: float = 0.05  # probe spacing after the burst until the frequency is learned
    settle_skew_error: float = 2e-6  # "learned": skew standard error below this
    max_settle: float = 20.0  # ... or after this many seconds of samples, whichever comes first
    locked_interval: float = 1.0  # probe spacing while locked on a quiet path (s)
    min_locked_interval: float = 0.1  # ... and at most this often on the noisiest paths
    quiet_error: float = 15e-6  # paths whose typical estimator error is above this probe faster
    reburst_error: float = 0.001  # error bound growth (s) that triggers a fresh burst
    reburst_every: float = 10.0  # ... at most this often (s)
    step_threshold: float = 0.05  # corrections beyond this are stepped/held, not slewed (s)
    hold_rate: float = 0.01  # network time's rate while absorbing a backward correction
    announce: float = 0.001  # steps and holds beyond this are announced as events (s)
    max_integrate: float = 10.0  # the integral path never takes a longer update gap than this (s)


@dataclass(frozen=True, slots=True)
class ClockEvent:
    """A discontinuity of network time that players should know about.

    kind: "step" (network time jumped forward by `amount` s), "hold" (network time runs at
    `hold_rate` for `duration` s to absorb `amount` < 0), "reacquire" (the local clock jumped:
    the loop is acquiring again), "lock" (the clock is within its lock bound again)."""

    kind: str
    local: float  # local time at which it happened
    amount: float = 0.0
    duration: float = 0.0


class DisciplinedClock:
    """Pure: every method takes the local time explicitly."""

    def __init__(self, config: PllConfig | None = None, estimator: EstimatorConfig | None = None):
        self.config = config or PllConfig()
        self.estimator = ClockEstimator(estimator)
        self.state = LockState.ACQUIRING
        self.freq = 0.0  # frequency correction (s/s)
        self.steps = 0  # immediate corrections (steps and holds) taken
        self.last_error = float("inf")  # |phase - estimate| at the last update
        self.events: deque[ClockEvent] = deque(maxlen=64)  # newest last; drained by the host
        self.event_count = 0
        self._seg_local = 0.0  # the current linear segment starts here (local time)
        self._seg_phase = 0.0  # ... with this phase
        self._slew = 0.0
        self._slew_until = 0.0  # local time at which the slew ends
        self._have_phase = False
        self._ever_locked = False
        self._last_update: float | None = None
        self._burst_left = self.config.burst_length
        self._samples = 0  # since the last (re-)acquisition began
        self._last_route_changes = 0
        self._last_discontinuities = 0
        self._typical_error = self.config.quiet_error  # slow average of the estimator's error
        self._read_local = float("-inf")  # the latest local time read (`read`)
        self.rebursts = 0
        self._last_reburst = float("-inf")

    # --- mapping ---------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        """Whether an estimate has set the mapping yet (before that it is the identity)."""
        return self._have_phase

    def phase(self, local: float) -> float:
        dt = local - self._seg_local
        slewed = min(max(dt, 0.0), self._slew_until - self._seg_local) if self._slew else 0.0
        return self._seg_phase + self.freq * dt + self._slew * slewed

    def to_network(self, local: float) -> float:
        return local + self.phase(local)

    def read(self, local: float) -> float:
        """Network time now, for a host reading its clock in order: never backwards. If the
        local clock itself went back since the last read, the mapping absorbs the jump at once
        (network time carries on from where it was) and the estimator re-acquires from the next
        samples."""
        if local < self._read_local and self._have_phase:
            back = self._read_local - local
            # Carry on from the last reading (plus a microsecond: strictly increasing).
            self._rebase(local, self.phase(self._read_local) + back + 1e-6)
            self._burst_left = self.config.burst_length
            self._emit(ClockEvent("reacquire", local, -back))
        self._read_local = local if local < self._read_local else max(self._read_local, local)
        return self.to_network(local)

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
        """Error bound at the last update: the estimator's error plus the correction pending."""
        est = self.estimator.last
        return (est.error + self.last_error + self.estimator.path_excess / 2) if est else float("inf")

    def error_at(self, local: float) -> float:
        """Bound on |network time - server time| at `local`: the estimator's statistical error,
        the drift its skew uncertainty allows since, and the correction not yet slewed in. (Path
        asymmetry, invisible to any two-way exchange, is bounded separately by delay/2; what the
        path added to its round trip lately may be one-way, and half of it is included.)"""
        est = self.estimator.last
        if est is None or not self._have_phase:
            return float("inf")
        pending = abs(est.offset_at(local) - self.phase(local))
        drift = 3 * est.skew_error * abs(local - est.at_local)
        return est.error + drift + pending + self.estimator.path_excess / 2

    def drain_events(self) -> list[ClockEvent]:
        out = list(self.events)
        self.events.clear()
        return out

    def suspect(self, local: float) -> None:
        """A hint from the host that the local clock may have jumped (woke from sleep, page
        shown again, wall and monotonic clocks disagree): probe at burst rate to find out."""
        self._burst_left = self.config.burst_length

    # --- discipline ------------------------------------------------------------------------

    def add_sample(self, sample: Sample) -> Estimate | None:
        """Feed one exchange (taken at local time `sample.t3`); updates the loop."""
        est = self.estimator.add(sample)
        self._samples += 1
        if self._burst_left > 0:
            self._burst_left -= 1
        if self.estimator.discontinuities != self._last_discontinuities:
            self._last_discontinuities = self.estimator.discontinuities
            self.state = LockState.ACQUIRING
            self._samples = len(self.estimator._samples)
            self._burst_left = self.config.burst_length
            self._emit(ClockEvent("reacquire", sample.t3))
        if est is not None and est.at_local == sample.t3:
            self._update(est, sample.t3)
        return est

    def _update(self, est: Estimate, now: float) -> None:
        cfg = self.config
        target = est.offset_at(now)
        if not self._have_phase:
            self._rebase(now, target)
            self.last_error = 0.0
            self._last_update = now
            self._maybe_lock(est, now)
            return
        current = self.phase(now)
        err = target - current
        self.last_error = abs(err)
        last = self._last_update if self._last_update is not None else now
        dt = min(now - last, cfg.max_integrate)
        if dt > 0 and self.state is LockState.LOCKED:
            # Integral path (type II): frequency integrates the phase error.
            self.freq += err * dt / (cfg.freq_time_constant * cfg.freq_time_constant)
        # Frequency-locked assist, as in NTP's hybrid loop: the regression slope over a long
        # baseline is a direct, low-noise measurement of the drift the integrator chases. Its
        # weight falls with its uncertainty (inverse variance) beyond fll_max_skew_error.
        ratio = cfg.fll_max_skew_error / max(est.skew_error, 1e-12)
        trust = min(1.0, ratio * ratio)
        self.freq += cfg.fll_gain * trust * (est.skew - self.freq)
        self.freq = max(-cfg.max_freq, min(cfg.max_freq, self.freq))
        self._last_update = now
        if self.state is LockState.ACQUIRING or abs(err) > cfg.step_threshold:
            self._jump(now, current, err)
        else:
            # Phase time constant grows with the path's noise: quiet paths track tightly, noisy
            # ones average several estimates instead of following each one.
            noise = self._typical_error / cfg.quiet_error
            tau = min(cfg.max_slew_time, max(cfg.min_slew_time, cfg.min_slew_time * noise))
            self._rebase(now, current)
            duration = max(abs(err) / cfg.max_slew, tau)
            self._slew = err / duration
            self._slew_until = now + duration
        self._maybe_lock(est, now)
        if self.state is not LockState.LOCKED:
            return
        # A fresh burst when the path changed or the error bound grew well past its usual level.
        grew = est.error > max(cfg.reburst_error, 4.0 * self._typical_error)
        changed = self.estimator.route_changes != self._last_route_changes
        if (changed or grew) and now - self._last_reburst >= cfg.reburst_every:
            self._last_route_changes = self.estimator.route_changes
            self._last_reburst = now
            self._burst_left = cfg.burst_length
            self.rebursts += 1
        self._typical_error += 0.05 * (min(est.error, 4.0 * self._typical_error) - self._typical_error)

    def _jump(self, now: float, current: float, err: float) -> None:
        """Apply `err` at once: a forward step, or a hold while network time catches up."""
        cfg = self.config
        self.steps += 1
        if err >= 0:
            self._rebase(now, current + err)
            if err > cfg.announce and self._ever_locked:
                self._emit(ClockEvent("step", now, err))
            return
        was_holding = self.holding(now)
        self._rebase(now, current)
        rate_drop = 1.0 + self.freq - cfg.hold_rate  # phase falls this fast while held
        duration = -err / rate_drop
        self._slew = -rate_drop
        self._slew_until = now + duration
        if -err > cfg.announce and self._ever_locked and not was_holding:
            self._emit(ClockEvent("hold", now, err, duration))

    @property
    def _hold_segment(self) -> bool:
        """The current segment is a hold (network time at hold_rate), not an ordinary slew."""
        return self._slew < -0.5

    def holding(self, local: float) -> bool:
        """Whether network time is being held back (absorbing a backward correction) at `local`."""
        return self._hold_segment and local < self._slew_until

    def _maybe_lock(self, est: Estimate, now: float) -> None:
        """Locked once enough samples agree and the whole error bound is within acquire_error."""
        cfg = self.config
        if self.state is LockState.LOCKED:
            return
        if self._samples >= cfg.acquire_samples and self.error_at(now) <= cfg.acquire_error:
            self.state = LockState.LOCKED
            if self._ever_locked:
                self._emit(ClockEvent("lock", now))
            self._ever_locked = True

    def _emit(self, event: ClockEvent) -> None:
        self.events.append(event)
        self.event_count += 1

    def _rebase(self, now: float, phase: float) -> None:
        self._seg_local, self._seg_phase = now, phase
        self._slew, self._slew_until = 0.0, now
        self._have_phase = True

    def next_probe_interval(self) -> float:
        """Quick burst on join and after trouble (route change, error growth, samples that
        contradict the window); slow when locked."""
        est = self.estimator.last
        acquiring = self.state is LockState.ACQUIRING and not (
            # Held back with a good estimate: waiting out the hold needs no faster probing.
            self._hold_segment and est is not None and est.error <= self.config.acquire_error
        )
        if acquiring or self._burst_left > 0 or self.estimator.suspicious:
            return self.config.burst_interval
        settling = est is None or est.skew_error > self.config.settle_skew_error
        if settling and self.estimator.span < self.config.max_settle:
            return self.config.settle_interval
        # Noisy paths need more exchanges for a quiet sample per direction: probe faster there.
        cfg = self.config
        scaled = cfg.locked_interval * cfg.quiet_error / max(self._typical_error, 1e-9)
        return min(cfg.locked_interval, max(cfg.min_locked_interval, scaled))
