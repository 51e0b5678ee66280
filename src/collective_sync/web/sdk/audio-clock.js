// Network time -> AudioContext time, so engine changes are scheduled sample-accurately with
// AudioParam automation instead of timers.
//
// AudioContext.getOutputTimestamp() pairs the context time of the sample now leaving the
// speakers with the performance clock. Audio hardware runs on its own crystal, so the two drift
// apart; a least-squares line through recent pairs (as audio schedulers do) maps the page's
// local clock onto context time, latency included. Network time reaches the local clock through
// the disciplined network clock: contextTime(T) = fit(network.toLocal(T)).

/** Least-squares line y = a + b·x through recent (x, y) pairs, centred for precision. */
export class LineFit {
  constructor(size = 64) {
    this.size = size;
    /** @type {Array<[number, number]>} */ this.pairs = [];
  }

  add(x, y) {
    this.pairs.push([x, y]);
    if (this.pairs.length > this.size) this.pairs.shift();
  }

  /** @returns {{x0: number, y0: number, slope: number}} */
  get line() {
    const n = this.pairs.length;
    if (!n) return { x0: 0, y0: 0, slope: 1 };
    const x0 = this.pairs.reduce((s, p) => s + p[0], 0) / n;
    const y0 = this.pairs.reduce((s, p) => s + p[1], 0) / n;
    let sxx = 0, sxy = 0;
    for (const [x, y] of this.pairs) { sxx += (x - x0) ** 2; sxy += (x - x0) * (y - y0); }
    return { x0, y0, slope: n > 1 && sxx > 0 ? sxy / sxx : 1 };
  }

  at(x) {
    const { x0, y0, slope } = this.line;
    return y0 + slope * (x - x0);
  }

  /** Root-mean-square residual of the pairs about the line. */
  get residual() {
    const n = this.pairs.length;
    if (n < 3) return Infinity;
    return Math.sqrt(this.pairs.reduce((s, [x, y]) => s + (y - this.at(x)) ** 2, 0) / n);
  }
}

/** Largest rate difference taken between the audio and the local clock: both run off crystals
 *  that differ by ppm, so a steeper slope is the pairs' jitter over a short span (after a start or
 *  a jump). Playing at a wrong rate is a pitch error; this bounds it at 0.1 % (under 2 cents). */
export const MAX_DRIFT = 1e-3;

/**
 * Context time -> network time near context time `ctxTime`, as {ctx, net, rate} meaning
 * network = net + (contextTime - ctx) · rate: the output-timestamp fit (context <-> local) composed
 * with the disciplined clock (local <-> network). Audio threads evaluate it per sample; the main
 * thread refreshes it often (the disciplined clock is piecewise linear: it slews).
 * @param {LineFit} fit
 * @param {{toNetwork: (local: number) => number}} network
 * @param {number} [minSpan] seconds the pairs must span before their slope is used
 */
export function networkMap(fit, network, ctxTime, minSpan = 0) {
  const line = fit.line; // context = y0 + slope · (local − x0)
  const { x0, y0 } = line;
  // A slope from pairs close together is mostly their jitter (ms over tens of ms, i.e. percent);
  // the audio and local clocks differ by ppm, so until the pairs span `minSpan` s take them as equal.
  const n = fit.pairs.length;
  const span = n > 1 ? fit.pairs[n - 1][0] - fit.pairs[0][0] : 0;
  const slope = span >= minSpan ? Math.min(Math.max(line.slope, 1 - MAX_DRIFT), 1 + MAX_DRIFT) : 1;
  const local = x0 + (ctxTime - y0) / slope;
  const net = network.toNetwork(local);
  const h = 0.1; // take the disciplined clock's local rate over a short step
  const rate = (network.toNetwork(local + h) - net) / h / slope;
  return { ctx: ctxTime, net, rate };
}

/** s: a pair this far off the pairs' offset (context − local) means one of the two clocks jumped
 *  (the context was suspended, the output underran badly, the machine slept): the pairs before it
 *  describe the old relation. Output timestamps jitter by a few ms even on a loaded machine, and
 *  the two crystals drift by ppm (µs over the fit's seconds), so neither reaches this. */
export const JUMP = 0.05;

export class AudioClock {
  /**
   * @param {BaseAudioContext & {getOutputTimestamp?: () => {contextTime: number, performanceTime: number}}} ctx
   * @param {{network: {toLocal: (t: number) => number}}} client a Client (its disciplined clock)
   * @param {(performanceMs: number) => number} perfToLocal the client's local clock at a
   *   performance.now() reading (the default client clock: (timeOrigin + ms) / 1000)
   */
  constructor(ctx, client, perfToLocal = (ms) => (performance.timeOrigin + ms) / 1000) {
    this.ctx = ctx;
    this.client = client;
    this.perfToLocal = perfToLocal;
    this.fit = new LineFit();
    this.jumps = 0; // times the pairs were dropped because a clock jumped
    this.timer = null;
  }

  /**
   * Take one (local, context) pair; call regularly (start() does, every 100 ms). The pairs relate
   * two local clocks only (the network clock's re-acquisitions leave them valid), so the fit
   * checks them itself: a pair that shows a jump starts it afresh.
   */
  sample() {
    const ts = this.ctx.getOutputTimestamp?.();
    if (!ts || !ts.performanceTime || ts.contextTime <= 0) return false; // not running yet
    const local = this.perfToLocal(ts.performanceTime);
    const pairs = this.fit.pairs;
    if (pairs.length) {
      const offset = pairs.reduce((s, [x, y]) => s + y - x, 0) / pairs.length;
      if (Math.abs(ts.contextTime - local - offset) > JUMP) {
        pairs.length = 0;
        this.jumps++;
      }
    }
    this.fit.add(local, ts.contextTime);
    return true;
  }

  start(intervalMs = 100) {
    this.sample();
    this.timer = setInterval(() => this.sample(), intervalMs);
  }

  stop() { clearInterval(this.timer); }

  /** Context time at which something scheduled is heard at local time `local`. */
  contextTimeAtLocal(local) { return this.fit.at(local); }

  /** Context time at which a change due at network time `t` must be scheduled. */
  contextTimeAt(t) { return this.fit.at(this.client.network.toLocal(t)); }

  /** Audio clock rate relative to the local clock, in ppm (hardware crystal drift). */
  get driftPpm() { return (this.fit.line.slope - 1) * 1e6; }
}
