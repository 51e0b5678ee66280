// RTP timestamps -> network time -> playout instant, for the SFU's streams (docs/protocol.md).
//
// The server states once per slot which network time an RTP timestamp was captured at (a
// `MediaSlot`: rtpTs, at, rate). Every subscriber receives the same timestamps for a slot, so
// every listener computes the same instant for every sample: `at + delta32(T - rtpTs)/rate + D`.
// Pure functions (no Web APIs): shared by the stream worklet and tested with node --test.

export const TS_MOD = 2 ** 32;
const HALF = 2 ** 31;

/** Signed distance from RTP timestamp b to a, modulo 2^32 (as the server's `ts_delta`). */
export function delta32(a, b) {
  let d = (a - b) % TS_MOD;
  if (d >= HALF) d -= TS_MOD;
  else if (d < -HALF) d += TS_MOD;
  return d;
}

/**
 * A slot's clock map from a `media` message, or null while it has none (no packet reached the
 * server yet). `rate` defaults to 48000 (the server omits it then).
 * @param {{rtpTs?: number, at?: number, rate?: number}} slot
 * @returns {{rtpTs: number, at: number, rate: number} | null}
 */
export function clockMap(slot) {
  if (!slot || !Number.isFinite(slot.rtpTs) || !Number.isFinite(slot.at)) return null;
  const rate = Number.isFinite(slot.rate) && slot.rate > 0 ? slot.rate : 48000;
  return { rtpTs: slot.rtpTs, at: slot.at, rate };
}

/** Network time at which the sample with RTP timestamp `ts` is heard, with playout delay D. */
export function playoutTime(map, ts, delay) {
  return map.at + delta32(ts, map.rtpTs) / map.rate + delay;
}

/**
 * The stream position (RTP ticks after `map.rtpTs`, fractional) that must be heard at network
 * time `t`: the inverse of playoutTime. A player evaluates it for every output sample.
 */
export function positionAt(map, t, delay) {
  return (t - delay - map.at) * map.rate;
}

/** Unwraps 32-bit RTP timestamps into a monotonic count (for WebCodecs' µs timestamps). */
export class Unwrapper {
  constructor() { this.last = null; this.ext = 0; }

  /** The extended value of `ts`, or null for a timestamp not after the last one (duplicate, reordered). */
  next(ts) {
    if (this.last === null) {
      this.last = ts;
      this.ext = ts;
      return ts;
    }
    const d = delta32(ts, this.last);
    if (d <= 0) return null;
    this.last = ts;
    this.ext += d;
    return this.ext;
  }
}
