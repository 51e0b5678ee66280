// The GAA engine for Web Audio: the same engine as collective_sync/engine/gaa.py (the
// reference renderer), checked against it sample by sample. See that module for why it is
// phase-coherent by construction: every change ramps from a shared network instant, the
// oscillator phase is a cycle count anchored in the session state (oscillators.cycleRef), and
// the low-pass is a per-harmonic gain with no memory.

export const RAMP = 0.05;
export const MAX_HARMONICS = 8;
export const F_MIN = 40, F_MAX = 2000, F_CEILING = 8000, LEVEL = 0.25;
export const DEFAULT_BASE = 220;
export const DEFAULTS = Object.freeze({
  'oscillators.cutoff': 2000, 'geometry.R': 1, 'geometry.r': 0.3, 'geometry.n': 3, 'geometry.phi0': 0,
  'geometry.omega': 0.5, 'polarity.balance': 0, 'polarity.light.amplitude': 0.8, 'polarity.light.phase': 0,
  'polarity.light.enabled': 1, 'polarity.dark.amplitude': 0.6, 'polarity.dark.phase': 0, 'polarity.dark.enabled': 1,
});
export const DEFAULT_HARMONICS = [1.0, 0.5, 0.33, 0.25, 0.2, 0.16, 0.14, 0.12];

const clip = (x, lo, hi) => Math.min(hi, Math.max(lo, x));

class Ramp {
  constructor(start, end = start, at = -Infinity) { this.start = start; this.end = end; this.at = at; }
  value(t) { return this.start + (this.end - this.start) * clip((t - this.at) / RAMP, 0, 1); }
  moved(t, end) { return new Ramp(this.value(t), end, t); }
}

function clamp(name, v) {
  if (name === 'oscillators.base') return clip(v, F_MIN, F_MAX);
  if (name === 'oscillators.cutoff') return clip(v, F_MIN, F_CEILING);
  if (name === 'polarity.balance') return clip(v, -1, 1);
  if (name.endsWith('.amplitude')) return clip(v, 0, 1);
  return v;
}

export class CycleRef {
  constructor(at = 0, cycles = 0, start = DEFAULT_BASE, end = DEFAULT_BASE) {
    this.at = at; this.cycles = cycles; this.start = start; this.end = end;
  }
  /** Cycle count at network time t; before `at` it runs back at the start frequency (see gaa.py). */
  cyclesAt(t) {
    const dt = t - this.at;
    const before = Math.min(dt, 0);
    const after = Math.max(dt, 0);
    const inside = Math.min(after, RAMP);
    const ramped = this.start * inside + ((this.end - this.start) * inside ** 2) / (2 * RAMP);
    return this.cycles + this.start * before + ramped + this.end * (after - inside);
  }
  frequency(t) { return this.start + (this.end - this.start) * clip((t - this.at) / RAMP, 0, 1); }
  toState() { return { at: this.at, cycles: this.cycles, start: this.start, end: this.end }; }
}

export class Engine {
  constructor() {
    this.params = Object.fromEntries(Object.entries(DEFAULTS).map(([k, v]) => [k, new Ramp(v)]));
    this.harmonics = DEFAULT_HARMONICS.map((a) => new Ramp(a));
    this.cycleRef = new CycleRef();
  }

  /** Apply state paths changed at network time `at`. */
  apply(changes, at) {
    const ref = changes['oscillators.cycleRef'];
    for (const [path, value] of Object.entries(changes)) {
      if (path === 'oscillators.harmonics' && Array.isArray(value)) {
        const amps = value.slice(0, MAX_HARMONICS).map((a) => clip(Number(a), 0, 1));
        while (amps.length < MAX_HARMONICS) amps.push(0);
        this.harmonics = this.harmonics.map((h, i) => h.moved(at, amps[i]));
      } else if (path === 'oscillators.base' && typeof value === 'number') {
        this.cycleRef = ref && typeof ref === 'object'
          ? new CycleRef(ref.at, ref.cycles, clamp(path, ref.start), clamp(path, ref.end))
          : this.nextCycleRef(at, clamp(path, value));
      } else if (path in this.params && (typeof value === 'number' || typeof value === 'boolean')) {
        this.params[path] = this.params[path].moved(at, clamp(path, Number(value)));
      }
    }
  }

  /** The anchor a leader writes with a base-frequency change taking effect at `at`. */
  nextCycleRef(at, newBase) {
    const r = this.cycleRef;
    const cycles = ((r.cyclesAt(at) % 1) + 1) % 1; // only the fraction matters; keeps phases exact
    return new CycleRef(at, cycles, r.frequency(at), newBase);
  }

  /** One sample at network time t (double precision, within ±LEVEL). */
  sample(t) {
    const p = (k) => this.params[k].value(t);
    const theta = p('geometry.phi0') + p('geometry.omega') * t;
    const ratio = clip(p('geometry.r') / Math.max(p('geometry.R'), 1e-6), 0, 1); // a torus, not a spindle
    const knot = Math.cos(p('geometry.n') * theta);
    const cycles = this.cycleRef.cyclesAt(t);
    const base = this.cycleRef.frequency(t);
    const balance = p('polarity.balance');
    const light = (p('polarity.light.amplitude') * p('polarity.light.enabled') * (1 - balance)) / 2;
    const dark = (p('polarity.dark.amplitude') * p('polarity.dark.enabled') * (1 + balance)) / 2;
    const cutoff = p('oscillators.cutoff');
    let out = 0;
    for (let k = 1; k <= this.harmonics.length; k++) {
      const f = base * k;
      if (f >= F_CEILING) continue;
      // Low-pass response at this harmonic; fade out over the last 10 % below the ceiling.
      const fade = clip((F_CEILING - f) / (0.1 * F_CEILING), 0, 1);
      const gain = (fade * this.harmonics[k - 1].value(t)) / Math.sqrt(1 + (f / cutoff) ** 2);
      const odd = k % 2 === 1;
      const sway = 1 + ratio * knot * (odd ? 1 : -1);
      const frac = ((cycles * k) % 1 + 1) % 1;
      out += gain * (odd ? light : dark) * sway * Math.sin(2 * Math.PI * frac + (odd ? p('polarity.light.phase') : p('polarity.dark.phase')));
    }
    return LEVEL * Math.tanh(out / 2);
  }

  /** `frames` samples from network time t0. */
  render(t0, frames, sampleRate) {
    const out = new Float64Array(frames);
    for (let n = 0; n < frames; n++) out[n] = this.sample(t0 + n / sampleRate);
    return out;
  }
}

/**
 * What a leader sends for `changes` taking effect at network time `at`: a base-frequency change
 * carries the cycle anchor for that instant, so every receiver (and later joiners) keep one phase.
 * `engine` holds the leader's latest anchor (apply what you send to it).
 */
export function leaderChange(engine, changes, at) {
  const out = { ...changes };
  if ('oscillators.base' in out) {
    const next = engine.nextCycleRef(at, clamp('oscillators.base', Number(out['oscillators.base'])));
    out['oscillators.cycleRef'] = next.toState();
  }
  return out;
}

/**
 * The engine paths a `polarity_sync` payload sets, applied at the control's `at`
 * (resonanceMode and darkEnergyDrift travel with the message; this engine does not render them).
 */
export function polarityChanges(payload) {
  const out = { 'polarity.balance': Number(payload.polarityBalance) };
  for (const [key, name] of [['lightChannel', 'light'], ['darkChannel', 'dark']]) {
    const channel = payload[key];
    out[`polarity.${name}.enabled`] = Boolean(channel.enabled);
    out[`polarity.${name}.amplitude`] = Number(channel.amplitude);
    out[`polarity.${name}.phase`] = Number(channel.phase);
  }
  return out;
}
