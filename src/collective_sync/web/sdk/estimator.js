// Offset, delay and skew of the server clock from four-timestamp exchanges.
// A port of collective_sync/timing/estimator.py: same algorithm, same constants, checked against
// vectors the Python simulator writes (tests/vectors/timing.json). See that module for the why:
// per-direction delay envelopes after removing the drift, each sample charged for its age; drift
// fitted (Bayesian, with priors on the skew and its rate of change) through per-bin envelope
// midpoints, bins on a changed path weighted down, the skew held over while the newest bin is
// congested; samples that contradict the window are held back, and a run of agreeing ones
// restarts it (the local clock jumped).
//
// Floating point: the arithmetic follows the Python operation by operation (sums in the same
// order, np.median, stable argsort tie rules, np.linspace, searchsorted side="left"), so both
// compute the same numbers up to one difference: Python's `x ** 2` calls C pow(), which (glibc)
// is off by one ulp from x * x for about 0.1 % of inputs, while V8's is exactly x * x. JS squares
// by multiplying; the results agree to ~1e-13, far inside the vectors' tolerances.

/** @typedef {{t0: number, t1: number, t2: number, t3: number}} Sample */
/**
 * @typedef {Object} Estimate
 * @property {number} atLocal @property {number} offset @property {number} skew
 * @property {number} delay @property {number} error @property {number} samples
 * @property {number} skewError
 */

/** A skew beyond this many prior spreads (1000 ppm) is no oscillator's (see restart). */
export const PLAUSIBLE_PRIORS = 5.0;
/** A round trip under this share of the window's least is not the path's (see tooFast). */
export const FAST_FACTOR = 0.75;
/** A trip may beat its envelope by this many error bounds, not more (see consistent). */
export const ENVELOPE_SLACK = 4.0;

export const ESTIMATOR_DEFAULTS = Object.freeze({
  window: 2048, routeChangeRun: 6, routeChangeFactor: 4.0, routeChangeMin: 0.002, maxSpan: 120.0,
  minSkewSpan: 0.5, skewBins: 16, skewPrior: 200e-6, ageCharge: 3.0, wander: 1e-8,
  skewRatePrior: 0.5e-6, congestionFactor: 4.0, congestionMin: 0.001, holdoverWander: 0.02e-6,
  maxDelay: 30.0, confirm: 3, gapScale: 5.0, tolerance: 50e-6, quarantine: 16, asymmetryMemory: 600.0,
});

/** @param {Sample} s */ export const sampleOffset = (s) => ((s.t1 - s.t0) + (s.t2 - s.t3)) / 2;
/** @param {Sample} s */ export const sampleDelay = (s) => (s.t3 - s.t0) - (s.t2 - s.t1);

/**
 * Why this exchange cannot be a timing sample, or null (Sample.invalid in Python): non-finite
 * stamps, a server that answered before it was asked, a reply before the request, or a round
 * trip beyond `maxDelay`.
 * @param {Sample} s @param {number} maxDelay @returns {string | null}
 */
export function sampleInvalid(s, maxDelay) {
  if (![s.t0, s.t1, s.t2, s.t3].every(Number.isFinite)) return 'non-finite';
  if (s.t1 > s.t2 || s.t3 < s.t0) return 'disordered';
  const d = sampleDelay(s);
  if (d < 0) return 'negative-delay';
  if (d > maxDelay) return 'absurd-delay';
  return null;
}

/** @param {Estimate} e @param {number} local */
export const offsetAt = (e, local) => e.offset + e.skew * (local - e.atLocal);

/** np.median: the middle value, or the mean of the two middle ones. */
function median(xs) {
  const s = Float64Array.from(xs).sort();
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Indices of the two smallest values, as np.argsort(kind="stable")[:2] (earlier index wins ties). */
function twoSmallest(xs) {
  let a = -1, b = -1;
  for (let i = 0; i < xs.length; i++) {
    if (a < 0 || xs[i] < xs[a]) { b = a; a = i; } else if (b < 0 || xs[i] < xs[b]) { b = i; }
  }
  return b < 0 ? [a] : [a, b];
}

/** Rank of each value in np.argsort(kind="stable") order. */
function stableRanks(xs) {
  const order = xs.map((_, i) => i).sort((i, j) => xs[i] - xs[j] || i - j);
  const rank = new Array(xs.length);
  order.forEach((i, r) => { rank[i] = r; });
  return rank;
}

/** First index in the sorted `xs` whose value is >= v (np.searchsorted side="left"). */
function searchLeft(xs, v) {
  let lo = 0, hi = xs.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (xs[mid] < v) lo = mid + 1; else hi = mid;
  }
  return lo;
}

/** First index past every value <= v (bisect.bisect_right). */
function searchRight(xs, v) {
  let lo = 0, hi = xs.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (v < xs[mid]) hi = mid; else lo = mid + 1;
  }
  return lo;
}

/** Inverse of a 3 x 3 matrix by cofactors (null if singular): written out as in Python. */
function inverse3(m) {
  const [[a, b, c], [d, e, f], [g, h, i]] = m;
  const co = [
    [e * i - f * h, -(d * i - f * g), d * h - e * g],
    [-(b * i - c * h), a * i - c * g, -(a * h - b * g)],
    [b * f - c * e, -(a * f - c * d), a * e - b * d],
  ];
  const det = a * co[0][0] + b * co[0][1] + c * co[0][2];
  if (!det || !Number.isFinite(det)) return null;
  return [0, 1, 2].map((r) => [0, 1, 2].map((k) => co[k][r] / det));
}

export class ClockEstimator {
  /** @param {Partial<typeof ESTIMATOR_DEFAULTS>} [config] */
  constructor(config = {}) {
    this.config = { ...ESTIMATOR_DEFAULTS, ...config };
    /** @type {Sample[]} */ this.samples = []; // local-time order; at most config.window
    /** @type {Sample[]} */ this.held = []; // contradicting the window; at most config.quarantine
    this.highRun = 0;
    this.prior = [0, this.config.skewPrior]; // skew prior: [mean, standard deviation]
    this.clean = [0, this.config.skewPrior, 0]; // last skew fitted on a clean path (+ when)
    this.calmScale = Infinity; // the bins' round-trip spread on that clean path
    this.minDelay = 0; // the least round trip in the window
    this.floorHint = 0; // ... and before the last restart, for the young window after it
    this.spread = 0; // median − least round trip in the window
    this.spreadHint = 0;
    this.routeChanges = 0;
    this.rejected = 0; // invalid, or contradicting the window and outvoted
    this.discontinuities = 0; // window restarts: the local clock (or the server's) jumped
    /** @type {Estimate | null} */ this.last = null;
    this.bestDelay = [Infinity, 0]; // least envelope round trip seen, and when
  }

  /** Seconds of local time covered by the window. */
  get span() {
    const s = this.samples;
    return s.length ? s[s.length - 1].t3 - s[0].t3 : 0;
  }

  /** How far the envelopes' round trip stands above the best seen lately (half of it is a
   *  possible one-way offset error). */
  get pathExcess() {
    return this.last ? Math.max(0, this.last.delay - this.bestDelay[0]) : 0;
  }

  /** Samples are being held back: a discontinuity may be under way (probe fast). */
  get suspicious() { return this.held.length > 0; }

  /** Take one exchange; returns the new estimate (null until there is one). @param {Sample} sample */
  add(sample) {
    const cfg = this.config;
    if (sampleInvalid(sample, cfg.maxDelay)) {
      this.rejected++;
      return this.last;
    }
    const n = this.samples.length;
    if (n && sample.t3 < this.samples[n - 1].t3 - cfg.maxDelay) {
      // The local clock went backwards: nothing before is comparable.
      this.restart([sample]);
      return this.last;
    }
    if (this.last !== null && (!this.consistent(sample, this.last) || this.tooFast(sample))) {
      this.held.push(sample);
      if (this.held.length > cfg.quarantine) this.held.shift();
      const run = this.agreeingRun();
      if (run.length < cfg.confirm) return this.last;
      // Replies straddling the jump look faster than the path, whose floor survives the jump:
      // afresh from those that respect it (all, if the whole run is faster: a new path).
      const margin = Math.max(cfg.tolerance, 0.25 * this.spread);
      const fair = run.filter((x) => sampleDelay(x) >= this.minDelay - margin);
      const delays = run.map(sampleDelay);
      if (!fair.length && Math.max(...delays) - Math.min(...delays) > Math.max(cfg.tolerance, this.spread)) {
        return this.last; // straddlers disagreeing on the round trip: no new path, wait
      }
      const fresh = fair.length ? fair : run;
      this.floorHint = Math.min(this.minDelay || Infinity, ...fresh.map(sampleDelay));
      this.spreadHint = this.spread;
      this.restart(fresh);
      return this.last;
    }
    this.rejected += this.held.length; // a lone contradiction, outvoted by this sample
    this.held = [];
    this.insert(sample);
    while (this.samples.length && sample.t3 - this.samples[0].t3 > cfg.maxSpan) this.samples.shift();
    if (this.samples.length > cfg.window) this.thin();
    this.trackRoute(sample);
    this.last = this.fit(sample.t3) ?? this.last;
    const [best, when] = this.bestDelay;
    // (Only a plausible fit's: a wild skew's negative round trip would inflate pathExcess.)
    if (this.last !== null && this.plausible(this.last) && (this.last.delay <= best || sample.t3 - when > cfg.asymmetryMemory)) {
      this.bestDelay = [this.last.delay, sample.t3];
    }
    return this.last;
  }

  /** A round trip of at least zero and a skew real oscillators can have (see _plausible). */
  plausible(est) {
    return est.delay >= 0 && Math.abs(est.skew) <= PLAUSIBLE_PRIORS * this.config.skewPrior;
  }

  /** Append, or insert in local-time order if a later reply overtook this one. */
  insert(sample) {
    const s = this.samples;
    if (s.length && sample.t3 < s[s.length - 1].t3) s.splice(searchRight(s.map((x) => x.t3), sample.t3), 0, sample);
    else s.push(sample);
  }

  /** Drop the sample of the window's older half least useful to either envelope. */
  thin() {
    const old = this.samples.slice(0, this.samples.length >> 1);
    const rankUp = stableRanks(old.map((s) => s.t1 - s.t0));
    const rankDown = stableRanks(old.map((s) => s.t3 - s.t2)); // smaller is better
    let worst = 0, worstRank = -1;
    for (let i = 0; i < old.length; i++) {
      const r = Math.min(rankUp[i], rankDown[i]);
      if (r > worstRank) { worst = i; worstRank = r; } // np.argmax: the first maximum
    }
    this.samples.splice(worst, 1);
  }

  /** Whether `s` fits the window's envelopes, within both error bounds and the drift since. */
  consistent(s, est) {
    const cfg = this.config;
    const off = offsetAt(est, s.t3);
    const age = Math.abs(s.t3 - est.atLocal);
    const drift = 3 * est.skewError * age + cfg.wander * age * age + cfg.tolerance;
    const tol = 2 * est.error + drift;
    const up = s.t1 - s.t0, down = s.t2 - s.t3;
    const lo = off + est.delay / 2, hi = off - est.delay / 2;
    if (up < hi - tol || down > lo + tol) return false;
    // Neither trip far better than its own envelope: no trip beats the path's fastest (a reply
    // read after waking, for a request sent before sleeping, reads short by the nap).
    // (At least half the path's round-trip spread: on a jittery real path the envelopes' own
    // error can understate what a genuine sample may beat them by.)
    const slack = Math.max(ENVELOPE_SLACK * est.error, this.spread / 2) + drift;
    return up >= lo - slack && down <= hi + slack;
  }

  /** The newest held samples that are consistent with each other (about one offset). */
  /** A round trip well under the window's fastest: the local clock stood still while the
   *  exchange was in flight (the device slept or woke mid-exchange), so its t3 reads early. */
  tooFast(s) {
    // A young window (just restarted) judges by the path's floor from before the jump. Real
    // round trips fall below the window's least only by a little of the path's spread.
    const young = this.samples.length < 8;
    const floor = young ? this.floorHint : this.minDelay;
    const spread = young ? this.spreadHint : this.spread;
    return floor > 0 && sampleDelay(s) < floor - Math.max(this.config.tolerance, 0.25 * spread);
  }

  /** The newest held samples that agree with each other, leaving out any far faster ones. */
  agreeingRun() {
    const typical = median(this.held.map(sampleDelay));
    const held = this.held.filter((x) => sampleDelay(x) >= FAST_FACTOR * typical - this.config.tolerance);
    if (!held.length) return [];
    let run = [held[held.length - 1]];
    for (let k = held.length - 2; k >= 0; k--) {
      const cand = [held[k], ...run];
      const up = Math.min(...cand.map((x) => x.t1 - x.t0));
      const down = Math.max(...cand.map((x) => x.t2 - x.t3));
      const slack = this.config.tolerance + this.prior[1] * (cand[cand.length - 1].t3 - cand[0].t3);
      if (up < down - slack) break;
      run = cand;
    }
    return run;
  }

  /** A new window (re-acquisition); the learned skew becomes the prior of the new fit. */
  restart(samples) {
    if (this.last !== null) {
      // Unless that fit was implausible (see _restart): a tight prior on a skew of percent would
      // make every later sample contradict the window again.
      this.prior = this.plausible(this.last) ? [this.last.skew, Math.max(this.last.skewError, 1e-6)] : [0, this.config.skewPrior];
    }
    this.discontinuities++;
    const now = samples[samples.length - 1].t3;
    this.clean = [...this.prior, now];
    this.calmScale = Infinity;
    this.samples = [];
    this.held = [];
    this.highRun = 0;
    this.bestDelay = [Infinity, 0];
    this.last = null;
    for (const s of samples) this.insert(s);
    this.last = this.fit(now);
  }

  trackRoute(sample) {
    const cfg = this.config;
    const delays = this.samples.map(sampleDelay);
    const dmin = Math.min(...delays);
    this.minDelay = dmin;
    const spread = median(delays) - dmin;
    this.spread = spread;
    if (sampleDelay(sample) > dmin + cfg.routeChangeFactor * spread + cfg.routeChangeMin) {
      this.highRun++;
      if (this.highRun >= cfg.routeChangeRun) { this.highRun = 0; this.routeChanges++; }
    } else {
      this.highRun = 0;
    }
  }

  /** Envelopes of the age-charged, drift-removed trips. @param {number} now */
  fit(now) {
    const cfg = this.config;
    const n = this.samples.length;
    if (!n) return null;
    const t = this.samples.map((s) => s.t3);
    const up = this.samples.map((s) => s.t1 - s.t0);
    const down = this.samples.map((s) => s.t2 - s.t3);
    const [skew, skewSe, curv, curvSe] = this.drift(t, up, down, now);
    const charge = t.map((x) => {
      const age = now - x;
      return cfg.ageCharge * (skewSe * age + curvSe * (age * age)) + cfg.wander * (age * age);
    });
    const drift = t.map((x) => skew * (x - now) + curv * ((x - now) * (x - now)));
    const upC = up.map((u, i) => u - drift[i] + charge[i]);
    const downC = down.map((d, i) => d - drift[i] - charge[i]);
    const iUp = twoSmallest(upC), iDown = twoSmallest(downC.map((d) => -d));
    const lo = upC[iUp[0]], hi = downC[iDown[0]];
    // Error: the charges of the two samples used plus gapScale x the runners-up gaps (see _fit).
    const gaps = n > 1 ? (upC[iUp[iUp.length - 1]] - lo) + (hi - downC[iDown[iDown.length - 1]]) : lo - hi;
    const error = (charge[iUp[0]] + charge[iDown[0]] + cfg.gapScale * gaps) / 2 + 1e-6;
    // The envelopes include their charges: remove them for the offset and the delay.
    const loRaw = lo - charge[iUp[0]], hiRaw = hi + charge[iDown[0]];
    return { atLocal: now, offset: (loRaw + hiRaw) / 2, skew, delay: loRaw - hiRaw, error, samples: n, skewError: skewSe };
  }

  /** Drift from per-bin envelope midpoints: [skew at `now`, its se, curvature, its se]. */
  drift(t, up, down, now) {
    const cfg = this.config;
    const [mean, prior] = this.prior;
    const quiet = [mean, prior, 0, 0];
    const n = t.length;
    const bins = Math.min(cfg.skewBins, Math.floor(n / 2));
    if (bins < 3 || t[n - 1] - t[0] < cfg.minSkewSpan) return quiet;
    // Bin edges as np.linspace computes them (start + i·step, the last exactly `stop`); the
    // window is in time order, so each bin is a contiguous slice.
    const start = t[0], stop = t[n - 1] + 1e-9;
    const step = (stop - start) / bins;
    const starts = [];
    for (let b = 0; b <= bins; b++) starts.push(searchLeft(t, b === bins ? stop : b * step + start));
    const ti = [], tj = [], ui = [], dj = [];
    for (let b = 0; b < bins; b++) {
      const loI = starts[b], hiI = starts[b + 1];
      if (hiI <= loI) continue;
      let i = loI, j = loI; // np.argmin / np.argmax: the first extreme
      for (let k = loI + 1; k < hiI; k++) {
        if (up[k] < up[i]) i = k;
        if (down[k] > down[j]) j = k;
      }
      ti.push(t[i] - now); tj.push(t[j] - now); ui.push(up[i]); dj.push(down[j]);
    }
    const m = ti.length;
    if (m < 3) return quiet;
    // A dozen bins: plain loops, summed in order, as the Python does.
    const x = ti.map((a, k) => (a + tj[k]) / 2);
    const y = ui.map((a, k) => (a + dj[k]) / 2);
    let sol = this.posterior(x, y, new Array(m).fill(1), 0);
    let excess = [], scale = 0;
    for (let pass = 0; pass < 2; pass++) { // the round trips need the curve, and the curve the weights
      // Bins whose best round trip stands above the window's best are on a changed path: Cauchy
      // weights scaled by the spread of the calmer half (see _drift).
      const [s, c] = sol;
      const rtt = ui.map((u, k) => (u - dj[k]) - (s * (ti[k] - tj[k]) + c * (ti[k] * ti[k] - tj[k] * tj[k])));
      const best = Math.min(...rtt);
      excess = rtt.map((r) => r - best);
      // (Most of the window congested: its calmer half is too, and the spread seen on the calm
      // path before holds.)
      const calm = median(Float64Array.from(excess).sort().subarray(0, Math.max(2, m >> 1)));
      scale = Math.max(Math.min(calm, 2 * this.calmScale), 10e-6);
      const w = excess.map((e) => 1 / (1 + (e / scale) * (e / scale)));
      // The calm bins' robust spread around the curve floors the residual scale: the priors stay
      // in force however well a few heavily weighted bins fit.
      const resid = [];
      for (let k = 0; k < m; k++) if (w[k] >= 0.5) resid.push(y[k] - (sol[4] + s * x[k] + c * x[k] * x[k]));
      const mid = median(resid);
      const mad = 1.4826 * median(resid.map((r) => Math.abs(r - mid)));
      sol = this.posterior(x, y, w, mad * mad);
    }
    if (excess[m - 1] > Math.max(cfg.congestionFactor * scale, cfg.congestionMin)) {
      // The newest bin is congested: hold over the skew learned on the clean path.
      const [skew, se, since] = this.clean;
      const grown = cfg.holdoverWander * (now - since);
      return [skew, Math.sqrt(se * se + grown * grown), 0, 0];
    }
    this.clean = [sol[0], sol[2], now];
    this.calmScale = scale;
    return [sol[0], sol[2], sol[1], sol[3]];
  }

  /**
   * Weighted Bayesian fit of y = a + s·x + c·x² with priors on s and c (flat on a), in two
   * passes (least squares for the residual scale, then the priors weigh against it).
   * Returns [s, c, se(s), se(c), a].
   */
  posterior(x, y, w, floor) {
    const [mean, prior] = this.prior;
    const cPrior = this.config.skewRatePrior / 2; // c is half the skew's rate of change
    const m = x.length;
    let sw = 0, sx = 0, sxx = 0, sxxx = 0, sxxxx = 0, sy = 0, sxy = 0, sxxy = 0, sww = 0;
    for (let q = 0; q < m; q++) {
      const xx = x[q], yy = y[q], ww = w[q], x2 = xx * xx;
      sw += ww;
      sx += ww * xx;
      sxx += ww * x2;
      sxxx += ww * x2 * xx;
      sxxxx += ww * x2 * x2;
      sy += ww * yy;
      sxy += ww * xx * yy;
      sxxy += ww * x2 * yy;
      sww += ww * ww;
    }
    const nEff = sw * sw / sww;
    const p2 = prior * prior, c2 = cPrior * cPrior; // Python's prior**2 (see the note on pow above)
    let noise = 0;
    let out = [mean, 0, prior, cPrior, sy / sw];
    for (let pass = 0; pass < 2; pass++) {
      // Pass 1 (noise 0): plain weighted least squares. Pass 2: its residual variance per unit
      // weight sets the data's weight against the priors.
      const k = noise ? 1 / noise : 1e30;
      const a = [
        [sw * k, sx * k, sxx * k],
        [sx * k, sxx * k + 1 / p2, sxxx * k],
        [sxx * k, sxxx * k, sxxxx * k + 1 / c2],
      ];
      const rhs = [sy * k, sxy * k + mean / p2, sxxy * k];
      const inv = inverse3(a);
      if (inv === null) return out;
      const [a0, a1, a2] = inv.map((row) => row[0] * rhs[0] + row[1] * rhs[1] + row[2] * rhs[2]);
      out = [a1, a2, Math.sqrt(Math.max(inv[1][1], 0)), Math.sqrt(Math.max(inv[2][2], 0)), a0];
      let ssr = 0;
      for (let q = 0; q < m; q++) {
        const r = y[q] - (a0 + a1 * x[q] + a2 * x[q] * x[q]);
        ssr += w[q] * r * r;
      }
      noise = Math.max(ssr / Math.max(nEff - 3, 1), floor, 1e-18);
    }
    return out;
  }
}
