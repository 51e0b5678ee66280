// One slot's received stream, played at network time (pure: used by stream-worklet.js, tested
// with node --test). Decoded chunks are queued by their RTP timestamp; `render` fills an output
// block whose first sample is heard at network time t0 (dt network seconds per sample): each
// sample reads the stream position due then, positionAt(map, t, D), with cubic interpolation.
import { delta32, positionAt } from './rtp-time.js';

const MAX_QUEUED = 4 * 48000; // samples per slot held at most (D is at most 2 s)
const REACH = 2; // samples the interpolator reads beyond its position

export class SlotPlayer {
  constructor() {
    this.map = null;
    this.queue = []; // {ts, rel, n, ch: [Float32Array, Float32Array], played}, sorted by rel
    this.queued = 0;
    this.head = null; // stream position rendered last (ticks after map.rtpTs)
    this.started = false;
    this.stats = { received: 0, late: 0, played: 0, gaps: 0, dropped: 0, margin: null };
  }

  setMap(map) {
    this.map = map;
    this.head = null;
    for (const c of this.queue) c.rel = map ? delta32(c.ts, map.rtpTs) : 0;
    this.queue.sort((a, b) => a.rel - b.rel);
  }

  push(ts, ch) {
    this.stats.received++;
    const n = ch[0].length;
    const rel = this.map ? delta32(ts, this.map.rtpTs) : 0;
    // How long before its first sample is due a chunk came (s): the playout delay's headroom.
    if (this.map && this.head !== null) this.stats.margin = (rel - this.head) / this.map.rate;
    if (this.map && this.head !== null && rel + n <= this.head) {
      this.stats.late++; // all of it was due already: playing it now would be out of step
      return;
    }
    const q = this.queue;
    let i = q.length;
    if (this.map) while (i > 0 && q[i - 1].rel > rel) i--;
    if (this.map && i > 0 && q[i - 1].rel === rel) return; // a duplicate
    q.splice(i, 0, { ts, rel, n, ch, played: false });
    this.queued += n;
    while (this.queued > MAX_QUEUED) {
      const c = q.shift();
      this.queued -= c.n;
      this.stats.dropped++;
    }
  }

  /** Index of the chunk holding position k (or where it would be), from a nearby index. */
  find(k, j) {
    const q = this.queue;
    while (j > 0 && q[j - 1].rel + q[j - 1].n > k) j--;
    while (j < q.length && q[j].rel + q[j].n <= k) j++;
    return j;
  }

  render(out, t0, dt, delay) {
    const frames = out[0].length;
    const m = this.map;
    if (!m) return;
    const p0 = positionAt(m, t0, delay);
    const dp = dt * m.rate; // stream ticks per output frame
    this.head = p0 + frames * dp;
    const q = this.queue;
    while (q.length && q[0].rel + q[0].n <= p0 - REACH) {
      const c = q.shift();
      this.queued -= c.n;
      if (!c.played) this.stats.late++;
    }
    if (!q.length) {
      if (this.started) this.stats.gaps++;
      this.started = false; // the stream stopped (or starves): wait for it again
      return;
    }
    const L = out[0];
    const R = out[1] ?? out[0];
    let j = 0;
    let missing = false;
    const tap = [0, 0, 0, 0, 0, 0, 0, 0]; // left then right, positions k-1 .. k+2
    for (let i = 0; i < frames; i++) {
      const p = p0 + i * dp;
      const k = Math.floor(p);
      const f = p - k;
      j = this.find(k, j);
      const here = j < q.length && q[j].rel <= k;
      if (here) {
        if (!q[j].played) this.stats.played++;
        q[j].played = true;
        this.started = true;
      } else if (this.started) missing = true; // a hole in a stream being played (lost or late)
      for (let d = -1; d <= 2; d++) {
        const jj = d === 0 ? j : this.find(k + d, j);
        const c = q[jj];
        if (c && c.rel <= k + d && k + d < c.rel + c.n) {
          tap[d + 1] = c.ch[0][k + d - c.rel];
          tap[d + 5] = (c.ch[1] ?? c.ch[0])[k + d - c.rel];
        } else {
          tap[d + 1] = 0;
          tap[d + 5] = 0;
        }
      }
      L[i] = cubic(tap[0], tap[1], tap[2], tap[3], f);
      if (R !== L) R[i] = cubic(tap[4], tap[5], tap[6], tap[7], f);
    }
    if (missing) this.stats.gaps++;
  }
}

/** Catmull-Rom interpolation between x1 and x2 at fraction f. */
export function cubic(x0, x1, x2, x3, f) {
  return x1 + 0.5 * f * (x2 - x0 + f * (2 * x0 - 5 * x1 + 4 * x2 - x3 + f * (3 * (x1 - x2) + x3 - x0)));
}
