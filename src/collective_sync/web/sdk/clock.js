// A network clock disciplined to the server by a type-II phase-locked loop.
// A port of collective_sync/timing/pll.py (see there for the why): network = local + phase(local),
// phase advancing at freq + slew; frequency integrates the phase error (plus an FLL assist from
// the estimator's skew); phase errors are slewed at a bounded rate once locked. While acquiring,
// or beyond stepThreshold, a correction is applied at once: forward by a step, backward by a hold
// (network time runs at holdRate until the error is gone). Network time never goes backwards once
// read (`read`), even when the local clock is set back. Steps, holds, re-acquisitions and re-locks
// are announced as events ({kind, local, amount, duration}) so players can re-anchor audio.

import { ClockEstimator, offsetAt } from './estimator.js';

export const PLL_DEFAULTS = Object.freeze({
  maxSlew: 2000e-6, minSlewTime: 0.5, maxSlewTime: 4.0, freqTimeConstant: 30.0, fllGain: 0.2,
  fllMaxSkewError: 20e-6, maxFreq: 1000e-6, acquireSamples: 6, acquireError: 0.001,
  burstInterval: 0.02, burstLength: 8, settleInterval: 0.05, settleSkewError: 2e-6, maxSettle: 20.0,
  lockedInterval: 1.0, minLockedInterval: 0.1, quietError: 15e-6, reburstError: 0.001,
  reburstEvery: 10.0, stepThreshold: 0.05, holdRate: 0.01, announce: 0.001, maxIntegrate: 10.0,
});

const MAX_EVENTS = 64; // events kept until drained (oldest dropped first)

/**
 * @typedef {Object} ClockEvent
 * @property {'step' | 'hold' | 'reacquire' | 'lock'} kind "step": network time jumped forward by
 *   `amount` s; "hold": it runs at holdRate for `duration` s to absorb `amount` < 0; "reacquire":
 *   the local clock jumped (acquiring again); "lock": within the lock bound again
 * @property {number} local local time at which it happened
 * @property {number} amount @property {number} duration
 */

export class DisciplinedClock {
  /** @param {Partial<typeof PLL_DEFAULTS>} [config] @param {object} [estimatorConfig] */
  constructor(config = {}, estimatorConfig = {}) {
    this.config = { ...PLL_DEFAULTS, ...config };
    this.estimator = new ClockEstimator(estimatorConfig);
    this.state = 'acquiring'; // or 'locked' (slewing only)
    this.freq = 0; // frequency correction (s/s)
    this.steps = 0; // immediate corrections (steps and holds) taken
    this.lastError = Infinity; // |phase - estimate| at the last update
    /** @type {ClockEvent[]} */ this.events = []; // newest last; drained by the host
    this.eventCount = 0;
    this.segLocal = 0; this.segPhase = 0; this.slew = 0; this.slewUntil = 0;
    this.havePhase = false;
    this.everLocked = false;
    this.lastUpdate = null;
    this.burstLeft = this.config.burstLength;
    this.sampleCount = 0; // since the last (re-)acquisition began
    this.lastRouteChanges = 0;
    this.lastDiscontinuities = 0;
    this.typicalError = this.config.quietError; // slow average of the estimator's error
    this.readLocal = -Infinity; // the latest local time read (`read`)
    this.rebursts = 0;
    this.lastReburst = -Infinity;
  }

  // --- mapping ----------------------------------------------------------------------------

  /** Whether an estimate has set the mapping yet (before that it is the identity). */
  get started() { return this.havePhase; }

  get locked() { return this.state === 'locked'; }

  /** network − local at local time `local` */
  phase(local) {
    const dt = local - this.segLocal;
    const slewed = this.slew ? Math.min(Math.max(dt, 0), this.slewUntil - this.segLocal) : 0;
    return this.segPhase + this.freq * dt + this.slew * slewed;
  }

  toNetwork(local) { return local + this.phase(local); }

  /** network − local now (the current phase). */
  offset(local) { return this.phase(local); }

  /**
   * Network time now, for a host reading its clock in order: never backwards. If the local clock
   * itself went back since the last read, the mapping absorbs the jump at once and the estimator
   * re-acquires from the next samples.
   */
  read(local) {
    if (local < this.readLocal && this.havePhase) {
      const back = this.readLocal - local;
      // Carry on from the last reading (plus a microsecond: strictly increasing).
      this.rebase(local, this.phase(this.readLocal) + back + 1e-6);
      this.burstLeft = this.config.burstLength;
      this.emit('reacquire', local, -back);
    }
    if (local < this.readLocal || local > this.readLocal) this.readLocal = local; // NaN: kept
    return this.toNetwork(local);
  }

  /** Exact inverse of toNetwork (piecewise linear, increasing). */
  toLocal(network) {
    const rate = 1 + this.freq;
    const segNet = this.toNetwork(this.segLocal);
    if (this.slew && network >= segNet) {
      // Network time at the end of the slew decides which piece `network` falls on.
      const endNet = this.toNetwork(this.slewUntil);
      if (network <= endNet) return this.segLocal + (network - segNet) / (rate + this.slew);
      return this.slewUntil + (network - endNet) / rate;
    }
    return this.segLocal + (network - segNet) / rate;
  }

  get freqPpm() { return this.freq * 1e6; }

  /** Error bound at the last update: the estimator's error plus the correction pending. */
  get error() {
    const est = this.estimator.last;
    return est ? est.error + this.lastError + this.estimator.pathExcess / 2 : Infinity;
  }

  /**
   * Bound on |network time − server time| at `local`: the estimator's error, the drift its skew
   * uncertainty allows since, the correction not yet slewed in, and half the path's recent excess
   * round trip (path asymmetry itself is bounded separately by delay/2).
   */
  errorAt(local) {
    const est = this.estimator.last;
    if (est === null || !this.havePhase) return Infinity;
    const pending = Math.abs(offsetAt(est, local) - this.phase(local));
    const drift = 3 * est.skewError * Math.abs(local - est.atLocal);
    return est.error + drift + pending + this.estimator.pathExcess / 2;
  }

  /** The events since the last drain, oldest first. @returns {ClockEvent[]} */
  drainEvents() {
    const out = this.events;
    this.events = [];
    return out;
  }

  /** A hint from the host that the local clock may have jumped (woke from sleep, page shown
   *  again): probe at burst rate to find out. */
  suspect(local) { // `local` unused: the Python signature, for hosts that pass it
    this.burstLeft = this.config.burstLength;
  }

  /** Whether network time is being held back (absorbing a backward correction) at `local`. */
  /** The current segment is a hold (network time at holdRate), not an ordinary slew. */
  get holdSegment() { return this.slew < -0.5; }

  holding(local) { return this.holdSegment && local < this.slewUntil; }

  // --- discipline -------------------------------------------------------------------------

  /** Feed one exchange (taken at local time sample.t3); updates the loop. */
  addSample(sample) {
    const est = this.estimator.add(sample);
    this.sampleCount++;
    if (this.burstLeft > 0) this.burstLeft--;
    if (this.estimator.discontinuities !== this.lastDiscontinuities) {
      this.lastDiscontinuities = this.estimator.discontinuities;
      this.state = 'acquiring';
      this.sampleCount = this.estimator.samples.length;
      this.burstLeft = this.config.burstLength;
      this.emit('reacquire', sample.t3);
    }
    if (est !== null && est.atLocal === sample.t3) this.update(est, sample.t3);
    return est;
  }

  update(est, now) {
    const cfg = this.config;
    const target = offsetAt(est, now);
    if (!this.havePhase) {
      this.rebase(now, target);
      this.lastError = 0;
      this.lastUpdate = now;
      this.maybeLock(est, now);
      return;
    }
    const current = this.phase(now);
    const err = target - current;
    this.lastError = Math.abs(err);
    const dt = Math.min(now - (this.lastUpdate ?? now), cfg.maxIntegrate);
    // Integral path (type II): frequency integrates the phase error.
    if (dt > 0 && this.locked) this.freq += (err * dt) / cfg.freqTimeConstant ** 2;
    // FLL assist weighted by the skew's inverse variance beyond fllMaxSkewError.
    const ratio = cfg.fllMaxSkewError / Math.max(est.skewError, 1e-12);
    const trust = Math.min(1, ratio * ratio);
    this.freq += cfg.fllGain * trust * (est.skew - this.freq);
    this.freq = Math.max(-cfg.maxFreq, Math.min(cfg.maxFreq, this.freq));
    this.lastUpdate = now;
    if (!this.locked || Math.abs(err) > cfg.stepThreshold) {
      this.jump(now, current, err);
    } else {
      // Quiet paths track tightly; noisy ones average several estimates.
      const noise = this.typicalError / cfg.quietError;
      const tau = Math.min(cfg.maxSlewTime, Math.max(cfg.minSlewTime, cfg.minSlewTime * noise));
      this.rebase(now, current);
      const duration = Math.max(Math.abs(err) / cfg.maxSlew, tau);
      this.slew = err / duration;
      this.slewUntil = now + duration;
    }
    this.maybeLock(est, now);
    if (!this.locked) return;
    // A fresh burst when the path changed or the error bound grew well past its usual level.
    const grew = est.error > Math.max(cfg.reburstError, 4 * this.typicalError);
    const changed = this.estimator.routeChanges !== this.lastRouteChanges;
    if ((changed || grew) && now - this.lastReburst >= cfg.reburstEvery) {
      this.lastRouteChanges = this.estimator.routeChanges;
      this.lastReburst = now;
      this.burstLeft = cfg.burstLength;
      this.rebursts++;
    }
    this.typicalError += 0.05 * (Math.min(est.error, 4 * this.typicalError) - this.typicalError);
  }

  /** Apply `err` at once: a forward step, or a hold while network time catches up. */
  jump(now, current, err) {
    const cfg = this.config;
    this.steps++;
    if (err >= 0) {
      this.rebase(now, current + err);
      if (err > cfg.announce && this.everLocked) this.emit('step', now, err);
      return;
    }
    const wasHolding = this.holding(now);
    this.rebase(now, current);
    const rateDrop = 1 + this.freq - cfg.holdRate; // phase falls this fast while held
    const duration = -err / rateDrop;
    this.slew = -rateDrop;
    this.slewUntil = now + duration;
    if (-err > cfg.announce && this.everLocked && !wasHolding) this.emit('hold', now, err, duration);
  }

  /** Locked once enough samples agree and the whole error bound is within acquireError. */
  maybeLock(est, now) {
    const cfg = this.config;
    if (this.locked) return;
    if (this.sampleCount >= cfg.acquireSamples && this.errorAt(now) <= cfg.acquireError) {
      this.state = 'locked';
      if (this.everLocked) this.emit('lock', now);
      this.everLocked = true;
    }
  }

  emit(kind, local, amount = 0, duration = 0) {
    this.events.push({ kind, local, amount, duration });
    if (this.events.length > MAX_EVENTS) this.events.shift();
    this.eventCount++;
  }

  rebase(now, phase) {
    this.segLocal = now; this.segPhase = phase; this.slew = 0; this.slewUntil = now;
    this.havePhase = true;
  }

  /** Seconds until the next time exchange: burst on join and after trouble (route change, error
   *  growth, samples that contradict the window), slower when locked. */
  nextProbeInterval() {
    const cfg = this.config;
    const est = this.estimator.last;
    // Held back with a good estimate: waiting out the hold needs no faster probing.
    const acquiring = !this.locked && !(this.holdSegment && est !== null && est.error <= cfg.acquireError);
    if (acquiring || this.burstLeft > 0 || this.estimator.suspicious) return cfg.burstInterval;
    const settling = est === null || est.skewError > cfg.settleSkewError;
    if (settling && this.estimator.span < cfg.maxSettle) return cfg.settleInterval;
    // Noisy paths need more exchanges for a quiet sample per direction: probe faster there.
    const scaled = (cfg.lockedInterval * cfg.quietError) / Math.max(this.typicalError, 1e-9);
    return Math.min(cfg.lockedInterval, Math.max(cfg.minLockedInterval, scaled));
  }
}
