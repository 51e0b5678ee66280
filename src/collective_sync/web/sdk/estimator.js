// Offset, delay and skew of the server clock from four-timestamp exchanges.
// A port of collective_sync/timing/estimator.py: same algorithm, same constants, checked against
// vectors the Python simulator writes (tests/vectors/timing.json). See that module for the why:
// per-direction delay envelopes after removing drift; skew from binned envelope regression shrunk
// by its standard error against a ±200 ppm prior (fitted through per-bin envelope midpoints, so a
// symmetric route change does not tilt it); look-back at least the drift budget's, doubled while
// that lowers the error bound.

/** @typedef {{t0: number, t1: number, t2: number, t3: number}} Sample */
/**
 * @typedef {Object} Estimate
 * @property {number} atLocal @property {number} offset @property {number} skew
 * @property {number} delay @property {number} error @property {number} samples
 * @property {number} skewError
 */

export const ESTIMATOR_DEFAULTS = Object.freeze({
  window: 2048, routeChangeRun: 6, routeChangeFactor: 4.0, routeChangeMin: 0.002, maxSpan: 120.0,
  minSkewSpan: 0.5, skewBins: 16, skewPrior: 200e-6, minHorizon: 1.0, driftBudget: 50e-6,
});

/** @param {Sample} s */ export const sampleOffset = (s) => ((s.t1 - s.t0) + (s.t2 - s.t3)) / 2;
/** @param {Sample} s */ export const sampleDelay = (s) => (s.t3 - s.t0) - (s.t2 - s.t1);

/** @param {Estimate} e @param {number} local */
export const offsetAt = (e, local) => e.offset + e.skew * (local - e.atLocal);

const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Indices of the two smallest values (stable: the earlier index wins a tie). */
function twoSmallest(xs) {
  let a = -1, b = -1;
  for (let i = 0; i < xs.length; i++) {
    if (a < 0 || xs[i] < xs[a]) { b = a; a = i; } else if (b < 0 || xs[i] < xs[b]) { b = i; }
  }
  return b < 0 ? [a] : [a, b];
}

/** Up and down envelopes (drift removed), error bound and samples used over the last `horizon` s. */
function envelopes(t, upD, downD, now, horizon, skewError) {
  const use = [];
  for (let i = 0; i < t.length; i++) if (t[i] >= now - horizon) use.push(i);
  const u = use.map((i) => upD[i]);
  const d = use.map((i) => -downD[i]); // negated: "two largest" via twoSmallest
  const iu = twoSmallest(u), id = twoSmallest(d);
  const lo = u[iu[0]], hi = -d[id[0]];
  const gaps = use.length > 1 ? (u[iu[iu.length - 1]] - lo) + (hi + d[id[id.length - 1]]) : lo - hi;
  const age = now - Math.min(t[use[iu[0]]], t[use[id[0]]]);
  return { lo, hi, error: gaps / 2 + skewError * age + 1e-6, used: use.length };
}

export class ClockEstimator {
  /** @param {Partial<typeof ESTIMATOR_DEFAULTS>} [config] */
  constructor(config = {}) {
    this.config = { ...ESTIMATOR_DEFAULTS, ...config };
    /** @type {Sample[]} */ this.samples = [];
    this.highRun = 0;
    this.routeChanges = 0;
    this.rejected = 0;
    /** @type {Estimate | null} */ this.last = null;
  }

  get span() {
    const s = this.samples;
    return s.length ? s[s.length - 1].t3 - s[0].t3 : 0;
  }

  /** Take one exchange; returns the new estimate (null until there is one). @param {Sample} sample */
  add(sample) {
    if (sampleDelay(sample) < 0 || sample.t3 < sample.t0) {
      this.rejected++;
      return this.last;
    }
    const cfg = this.config;
    this.samples.push(sample);
    if (this.samples.length > cfg.window) this.samples.shift();
    while (this.samples.length && sample.t3 - this.samples[0].t3 > cfg.maxSpan) this.samples.shift();
    const delays = this.samples.map(sampleDelay);
    const dmin = Math.min(...delays);
    const spread = median(delays) - dmin;
    if (sampleDelay(sample) > dmin + cfg.routeChangeFactor * spread + cfg.routeChangeMin) {
      this.highRun++;
      if (this.highRun >= cfg.routeChangeRun) { this.highRun = 0; this.routeChanges++; }
    } else {
      this.highRun = 0;
    }
    this.last = this.fit(sample.t3) ?? this.last;
    return this.last;
  }

  /** @param {number} now */
  fit(now) {
    const cfg = this.config;
    const n = this.samples.length;
    if (!n) return null;
    const t = this.samples.map((s) => s.t3);
    const up = this.samples.map((s) => s.t1 - s.t0);
    const down = this.samples.map((s) => s.t2 - s.t3);
    const [skew, skewError] = this.skew(t, up, down);
    const upD = up.map((x, i) => x - skew * (t[i] - now));
    const downD = down.map((x, i) => x - skew * (t[i] - now));
    let horizon = Math.min(cfg.maxSpan, Math.max(cfg.minHorizon, cfg.driftBudget / Math.max(skewError, 1e-12)));
    let best = envelopes(t, upD, downD, now, horizon, skewError);
    while (horizon < cfg.maxSpan && best.used < n) {
      horizon = Math.min(cfg.maxSpan, 2 * horizon);
      const cand = envelopes(t, upD, downD, now, horizon, skewError);
      if (cand.error >= best.error) break;
      best = cand;
    }
    const { lo, hi, error, used } = best;
    return { atLocal: now, offset: (lo + hi) / 2, skew, delay: lo - hi, error, samples: used, skewError };
  }

  /** Slope through the per-bin envelope extremes' midpoints, shrunk by its standard error. */
  skew(t, up, down) {
    const cfg = this.config;
    const prior = cfg.skewPrior;
    const n = t.length;
    const bins = Math.min(cfg.skewBins, Math.floor(n / 2));
    if (bins < 3 || t[n - 1] - t[0] < cfg.minSkewSpan) return [0, prior];
    const start = t[0], stop = t[n - 1] + 1e-9;
    const step = (stop - start) / bins;
    const edges = Array.from({ length: bins + 1 }, (_, k) => k * step + start);
    edges[bins] = stop;
    const idx = t.map((x) => {
      let c = 0;
      while (c < edges.length && edges[c] <= x) c++; // searchsorted(..., side="right")
      return Math.min(Math.max(c - 1, 0), bins - 1);
    });
    const ptsT = [], ptsY = [];
    for (let b = 0; b < bins; b++) {
      let i = -1, j = -1;
      for (let k = 0; k < n; k++) {
        if (idx[k] !== b) continue;
        if (i < 0 || up[k] < up[i]) i = k;
        if (j < 0 || down[k] > down[j]) j = k;
      }
      if (i < 0) continue;
      ptsT.push((t[i] + t[j]) / 2); ptsY.push((up[i] + down[j]) / 2); // exactly linear in skew
    }
    if (ptsT.length < 3) return [0, prior];
    const mt = mean(ptsT), my = mean(ptsY);
    const tc = ptsT.map((x) => x - mt), yc = ptsY.map((y) => y - my);
    const v = tc.reduce((a, x) => a + x * x, 0);
    if (v <= 0) return [0, prior];
    const slope = tc.reduce((a, x, k) => a + x * yc[k], 0) / v;
    const rss = yc.reduce((a, y, k) => a + (y - slope * tc[k]) ** 2, 0);
    const se2 = rss / Math.max(ptsT.length - 2, 1) / v;
    const shrink = prior ** 2 / (prior ** 2 + se2);
    return [slope * shrink, Math.sqrt(shrink * se2)];
  }
}
