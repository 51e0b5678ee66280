// Playout (jitter) buffer: apply every update at its sender time + D, in timestamp order.
// A port of collective_sync/timing/jitter.py (see there for the why; D is session-wide).

/** @typedef {{at: number, sender: string, seq: number, keys: string[], payload?: any}} Item */

export const ADAPTIVE_DEFAULTS = Object.freeze({
  targetLate: 0.001, margin: 0.005, window: 1000, minDelay: 0.02, maxDelay: 1.0, upRate: 0.5, downRate: 0.01,
});

/** Bounds of the per-key memory of what was applied (JitterBuffer's `memory` and `max_keys`). */
export const JITTER_DEFAULTS = Object.freeze({ memory: 60.0, maxKeys: 65536 });

export const FORGET_EVERY = 1024; // applications between sweeps of the per-key memory

/** Compare (at, sender, seq) stamps as Python compares tuples. */
function cmp(a, b) {
  if (a[0] !== b[0]) return a[0] < b[0] ? -1 : 1;
  if (a[1] !== b[1]) return a[1] < b[1] ? -1 : 1;
  return a[2] === b[2] ? 0 : a[2] < b[2] ? -1 : 1;
}
const stampOf = (item) => [item.at, item.sender, item.seq];
const NONE = [-Infinity, '', -1];

/** numpy.percentile with linear interpolation (numpy's lerp: from the nearer neighbour). */
export function percentile(values, q) {
  const s = Float64Array.from(values).sort();
  const pos = (s.length - 1) * (q / 100);
  if (pos >= s.length - 1) return s[s.length - 1];
  const lo = Math.floor(pos);
  const a = s[lo], b = s[lo + 1], gamma = pos - lo, diff = b - a;
  return gamma >= 0.5 ? b - diff * (1 - gamma) : a + diff * gamma;
}

/** The median as np.median computes it (mean of the two middle values for an even count). */
function median(values) {
  const s = Float64Array.from(values).sort();
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export class JitterBuffer {
  /**
   * @param {number} [delay] the session's playout delay D (s)
   * @param {Partial<typeof ADAPTIVE_DEFAULTS>} [adaptive]
   * @param {{memory?: number, maxKeys?: number}} [bounds] seconds of "last applied" stamps
   *   remembered per key, and how many keys at most (`newest.size` counts those remembered)
   */
  constructor(delay = 0.15, adaptive = {}, { memory = JITTER_DEFAULTS.memory, maxKeys = JITTER_DEFAULTS.maxKeys } = {}) {
    this.delay = delay;
    this.memory = memory;
    this.maxKeys = maxKeys;
    this.adaptive = { ...ADAPTIVE_DEFAULTS, ...adaptive };
    this.stats = { received: 0, applied: 0, lateApplied: 0, lateDropped: 0, reordered: 0 };
    this.suggestedDelay = delay;
    /** @type {Item[]} */ this.queue = []; // sorted by (at, sender, seq)
    /** @type {Map<string, Array>} */ this.newest = new Map(); // key -> stamp last applied
    this.floor = -Infinity; // stamps older than this were forgotten: late items below it drop
    this.marks = 0;
    /** @type {number[]} */ this.transits = [];
    this.maxAt = -Infinity;
    this.lastAdapt = null;
  }

  get lateRatio() {
    const s = this.stats;
    return s.received ? (s.lateApplied + s.lateDropped) / s.received : 0;
  }

  setDelay(delay) { this.delay = delay; }

  /** An update that arrived at network time `arrival`; returns [item] if it applies at once (late). */
  push(item, arrival) {
    const st = this.stats;
    st.received++;
    this.transits.push(arrival - item.at);
    if (this.transits.length > this.adaptive.window) this.transits.shift();
    this.adapt(arrival);
    const stamp = stampOf(item);
    if (item.at < this.maxAt) st.reordered++; else this.maxAt = item.at;
    if (item.at + this.delay > arrival) {
      let lo = 0, hi = this.queue.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (cmp(stampOf(this.queue[mid]), stamp) <= 0) lo = mid + 1; else hi = mid;
      }
      this.queue.splice(lo, 0, item);
      return [];
    }
    if (item.at >= this.floor && item.keys.every((k) => cmp(this.newest.get(k) ?? NONE, stamp) < 0)) {
      st.lateApplied++;
      this.markApplied(item);
      return [item];
    }
    st.lateDropped++;
    return [];
  }

  /** Every buffered update whose playout time at + D has come, in (at, sender, seq) order. */
  popDue(now) {
    const out = [];
    while (this.queue.length && this.queue[0].at + this.delay <= now) {
      const item = this.queue.shift();
      this.markApplied(item);
      out.push(item);
    }
    return out;
  }

  nextDue() { return this.queue.length ? this.queue[0].at + this.delay : null; }

  get length() { return this.queue.length; }

  markApplied(item) {
    this.stats.applied++;
    const stamp = stampOf(item);
    for (const k of item.keys) if (cmp(this.newest.get(k) ?? NONE, stamp) < 0) this.newest.set(k, stamp);
    this.marks++;
    if (this.marks % FORGET_EVERY === 0 || this.newest.size > this.maxKeys) this.forget();
  }

  /** Forget keys last applied more than `memory` s before the newest update (a late update older
   *  than that is then dropped, not applied); beyond `maxKeys`, the older half goes too. */
  forget() {
    let floor = this.maxAt - this.memory;
    if (this.newest.size > this.maxKeys) {
      const mid = median([...this.newest.values()].map((v) => v[0]));
      if (mid > floor) floor = mid;
    }
    if (floor > this.floor) {
      this.floor = floor;
      this.newest = new Map([...this.newest].filter(([, v]) => v[0] >= floor));
    }
  }

  adapt(now) {
    const cfg = this.adaptive;
    const last = this.lastAdapt;
    this.lastAdapt = now;
    if (this.transits.length < 20) return;
    const pct = percentile(this.transits, 100 * (1 - cfg.targetLate));
    const target = Math.min(cfg.maxDelay, Math.max(cfg.minDelay, pct + cfg.margin));
    const dt = last === null ? 0 : Math.max(0, now - last);
    const cur = this.suggestedDelay;
    this.suggestedDelay = target > cur
      ? Math.min(target, cur + cfg.upRate * Math.max(dt, 0.02))
      : Math.max(target, cur - cfg.downRate * dt);
  }
}
