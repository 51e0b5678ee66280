// A network clock disciplined to the server by a type-II phase-locked loop.
// A port of collective_sync/timing/pll.py (see there for the why): network = local + phase(local),
// phase advancing at freq + slew; frequency integrates the phase error (plus an FLL assist from
// the estimator's skew); phase errors are slewed at a bounded rate, never stepped after lock.

import { ClockEstimator, offsetAt } from './estimator.js';

export const PLL_DEFAULTS = Object.freeze({
  maxSlew: 2000e-6, minSlewTime: 0.5, maxSlewTime: 4.0, freqTimeConstant: 30.0, fllGain: 0.2,
  fllMaxSkewError: 20e-6, maxFreq: 1000e-6, acquireSamples: 6, acquireError: 0.002,
  burstInterval: 0.02, burstLength: 8, settleInterval: 0.05, settleSkewError: 2e-6, maxSettle: 20.0,
  lockedInterval: 1.0, minLockedInterval: 0.1, quietError: 15e-6, reburstError: 0.001,
});

export class DisciplinedClock {
  /** @param {Partial<typeof PLL_DEFAULTS>} [config] @param {object} [estimatorConfig] */
  constructor(config = {}, estimatorConfig = {}) {
    this.config = { ...PLL_DEFAULTS, ...config };
    this.estimator = new ClockEstimator(estimatorConfig);
    this.locked = false;
    this.freq = 0;
    this.steps = 0;
    this.lastError = Infinity;
    this.segLocal = 0; this.segPhase = 0; this.slew = 0; this.slewUntil = 0;
    this.lastUpdate = null;
    this.burstLeft = this.config.burstLength;
    this.sampleCount = 0;
    this.lastRouteChanges = 0;
    this.typicalError = this.config.quietError;
    this.rebursts = 0;
  }

  /** network − local at local time `local` */
  phase(local) {
    const dt = local - this.segLocal;
    const slewed = this.slew ? Math.min(Math.max(dt, 0), this.slewUntil - this.segLocal) : 0;
    return this.segPhase + this.freq * dt + this.slew * slewed;
  }

  toNetwork(local) { return local + this.phase(local); }

  /** Exact inverse of toNetwork (piecewise linear, increasing). */
  toLocal(network) {
    const rate = 1 + this.freq;
    const segNet = this.toNetwork(this.segLocal);
    if (this.slew && network >= segNet) {
      const endNet = this.toNetwork(this.slewUntil);
      if (network <= endNet) return this.segLocal + (network - segNet) / (rate + this.slew);
      return this.slewUntil + (network - endNet) / rate;
    }
    return this.segLocal + (network - segNet) / rate;
  }

  get freqPpm() { return this.freq * 1e6; }

  get error() {
    const est = this.estimator.last;
    return (est ? est.error : Infinity) + (this.locked ? 0 : this.lastError);
  }

  /** Feed one exchange (taken at local time sample.t3). */
  addSample(sample) {
    const est = this.estimator.add(sample);
    this.sampleCount++;
    if (this.burstLeft > 0) this.burstLeft--;
    if (est) this.update(est, sample.t3);
    return est;
  }

  update(est, now) {
    const cfg = this.config;
    const target = offsetAt(est, now);
    if (!this.locked) {
      this.rebase(now, target);
      this.steps++;
      this.lastError = 0;
      if (this.sampleCount >= cfg.acquireSamples && est.error < cfg.acquireError) this.locked = true;
      this.lastUpdate = now;
      return;
    }
    const current = this.phase(now);
    const err = target - current;
    this.lastError = Math.abs(err);
    const dt = now - (this.lastUpdate ?? now);
    if (dt > 0) this.freq += (err * dt) / cfg.freqTimeConstant ** 2;
    // FLL assist weighted by the skew's inverse variance beyond fllMaxSkewError.
    const trust = Math.min(1, (cfg.fllMaxSkewError / Math.max(est.skewError, 1e-12)) ** 2);
    this.freq += cfg.fllGain * trust * (est.skew - this.freq);
    this.freq = Math.max(-cfg.maxFreq, Math.min(cfg.maxFreq, this.freq));
    this.rebase(now, current);
    const noise = this.typicalError / cfg.quietError;
    const tau = Math.min(cfg.maxSlewTime, Math.max(cfg.minSlewTime, cfg.minSlewTime * noise));
    const duration = Math.max(Math.abs(err) / cfg.maxSlew, tau);
    this.slew = err / duration;
    this.slewUntil = now + duration;
    this.lastUpdate = now;
    const grew = est.error > Math.max(cfg.reburstError, 4 * this.typicalError);
    if (this.estimator.routeChanges !== this.lastRouteChanges || grew) {
      this.lastRouteChanges = this.estimator.routeChanges;
      this.burstLeft = cfg.burstLength;
      this.rebursts++;
    }
    this.typicalError += 0.05 * (Math.min(est.error, 4 * this.typicalError) - this.typicalError);
  }

  rebase(now, phase) {
    this.segLocal = now; this.segPhase = phase; this.slew = 0; this.slewUntil = now;
  }

  /** Seconds until the next time exchange: burst on join and after trouble, slower when locked. */
  nextProbeInterval() {
    const cfg = this.config;
    if (!this.locked || this.burstLeft > 0) return cfg.burstInterval;
    const est = this.estimator.last;
    const settling = !est || est.skewError > cfg.settleSkewError;
    if (settling && this.estimator.span < cfg.maxSettle) return cfg.settleInterval;
    const scaled = (cfg.lockedInterval * cfg.quietError) / Math.max(this.typicalError, 1e-9);
    return Math.min(cfg.lockedInterval, Math.max(cfg.minLockedInterval, scaled));
  }
}
