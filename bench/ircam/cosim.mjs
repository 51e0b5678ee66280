// Co-simulation of @ircam/sync's SyncClient over a pre-drawn packet trace (see bench/clock.py).
//
// Reads one JSON job on stdin:
//   {offset, skew, duration, evalDt, processing, seed,
//    trace: {up, down, routeChangeAt, routeChangeAdd, extraUp, extraDown, outages},
//    oscillator: {offset, skew, ramp: [from, to, rate] | null, freezes: [[at, d], ...], steps: [[at, amount], ...]},
//    corrupt: [[fromTrueTime, kind, value], ...]}
// (`trace` is sim.PacketTrace.to_json(), `oscillator` is sim.Oscillator.to_json(); every field
// after `seed`, and `oscillator`/`corrupt` as a whole, may be missing: old jobs still work) and
// writes {t, error, firstSync, asleep, nonFinite} on stdout.
//
// Time is virtual: setTimeout/clearTimeout and Math.random are replaced, so a 300 s run takes
// well under a second and is reproducible. True time is the server's clock. The network, the
// oscillator, suspensions and corrupt replies mirror sim.py `simulate_clock` exactly:
// - error[i] is null before the first estimate (firstSync) and while the device is asleep;
//   a non-finite estimate (the library poisoned by a corrupt reply) is written as 1e9 and
//   counted in nonFinite;
// - while suspended, a timer that would fire is postponed to the wake time and a reply that
//   arrives is dropped.
import { readFileSync } from 'node:fs';
import clientModule from '@ircam/sync/client/index.js';

const SyncClient = clientModule.default ?? clientModule.SyncClient ?? clientModule;

const job = JSON.parse(readFileSync(0, 'utf8'));
const { duration, evalDt, processing, trace } = job;
// The oscillator: job.oscillator if given, else the old top-level offset/skew.
const osc = job.oscillator ?? { offset: job.offset, skew: job.skew };
const offset = osc.offset ?? job.offset;
const skew = osc.skew ?? job.skew;
const ramp = osc.ramp ?? null;
const freezes = osc.freezes ?? [];
const steps = osc.steps ?? [];
const extraUp = trace.extraUp ?? [];
const extraDown = trace.extraDown ?? [];
const outages = trace.outages ?? [];
// sorted(scenario.corrupt): Python orders tuples by time, then kind, then value.
const corruptions = (job.corrupt ?? []).map((c) => [...c]).sort(
  (a, b) => a[0] - b[0] || (a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0) || a[2] - b[2],
);

// Virtual clock and event queue. Each event is [time, seq, kind, timerId, fn]: seq orders
// events at one instant (FIFO); kind is 'timer' (a setTimeout callback or the start: postponed
// while asleep) or 'net' (a reply arriving: read at wake-up if it arrives while asleep).
let now = 0;
let seq = 0;
const queue = [];
const before = (a, b) => a[0] < b[0] || (a[0] === b[0] && a[1] < b[1]);
const push = (time, kind, timerId, fn) => {
  const item = [time, seq++, kind, timerId, fn];
  let i = queue.length;
  queue.push(item);
  while (i > 0) { // binary-heap sift-up
    const p = (i - 1) >> 1;
    if (before(queue[p], item)) break;
    [queue[p], queue[i]] = [queue[i], queue[p]];
    i = p;
  }
};
const pop = () => {
  const top = queue[0];
  const last = queue.pop();
  if (queue.length) {
    queue[0] = last;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1, r = l + 1;
      let m = i;
      if (l < queue.length && before(queue[l], queue[m])) m = l;
      if (r < queue.length && before(queue[r], queue[m])) m = r;
      if (m === i) break;
      [queue[m], queue[i]] = [queue[i], queue[m]];
      i = m;
    }
  }
  return top;
};

// Timers. What was wrong before: setTimeout returned the event queue's sequence number, which
// started at 0, and clearTimeout(id) blindly cancelled whatever had that number. SyncClient's
// constructor sets `this.timeoutId = 0` and `_syncLoop` begins with `clearTimeout(this.timeoutId)`,
// so the very first call was clearTimeout(0), which cancelled event 0: the first reply (pushed
// by sendFunction before the client's own timeout timer), or, if the first ping was lost, the
// ping-timeout timer itself, so the client never retried and never synced. Now timer ids have
// their own counter starting at 1 (like browsers: never 0), clearTimeout ignores ids that are
// not a live timer's (undefined, null, 0, already fired), and replies are not timers at all, so
// nothing the library passes can cancel them.
let nextTimerId = 1;
const liveTimers = new Set();
globalThis.setTimeout = (fn, ms = 0) => {
  const id = nextTimerId++;
  liveTimers.add(id);
  push(now + ms / 1000, 'timer', id, fn);
  return id;
};
globalThis.clearTimeout = (id) => {
  if (id === undefined || id === null || id === 0) return;
  liveTimers.delete(id);
};

let rngState = (job.seed >>> 0) || 1; // xorshift32: deterministic Math.random for its ping series
Math.random = () => {
  rngState ^= rngState << 13; rngState >>>= 0;
  rngState ^= rngState >>> 17;
  rngState ^= rngState << 5; rngState >>>= 0;
  return rngState / 4294967296;
};

// sim.Oscillator.local without wander: the client's clock at true time t.
const local = (t) => {
  let extra = 0.0;
  if (ramp !== null) {
    const [a, b, rate] = ramp;
    const inside = Math.min(Math.max(t, a), b) - a;
    extra += 0.5 * rate * inside ** 2 + rate * (b - a) * Math.max(t - b, 0.0);
  }
  for (const [at, d] of freezes) if (t > at) extra -= Math.min(t - at, d);
  for (const [at, amount] of steps) if (t >= at) extra += amount;
  return t + offset + skew * t + extra;
};
// sim.Oscillator.wake_time: if suspended at true time t, when the device wakes; else null.
const wakeTime = (t) => {
  for (const [at, d] of freezes) if (at <= t && t < at + d) return at + d;
  return null;
};

// sim.extra_at: piecewise-linear added delay (0 before the first point and at/after the last;
// two points at one instant make a step).
const extraAt = (points, t) => {
  if (!points.length || t < points[0][0] || t >= points[points.length - 1][0]) return 0.0;
  for (let k = 0; k + 1 < points.length; k++) {
    const [ta, da] = points[k];
    const [tb, db] = points[k + 1];
    if (ta <= t && t < tb) return da + (db - da) * (t - ta) / (tb - ta);
  }
  return 0.0;
};
// sim.PacketTrace.next: the next packet's delay in `dir` if sent at true time t (null = lost).
const idx = { up: 0, down: 0 };
const next = (dir, t) => {
  const draws = trace[dir];
  let d = draws[idx[dir]++ % draws.length];
  if (outages.length && outages.some(([at, dd]) => at <= t && t < at + dd)) return null;
  if (d !== null && trace.routeChangeAt != null && t >= trace.routeChangeAt) d += trace.routeChangeAdd;
  if (d !== null) d += extraAt(dir === 'up' ? extraUp : extraDown, t);
  return d;
};

// sim.corrupt: a reply's server stamps as a broken or hostile server might send them.
const corrupt = (kind, value, t1, t2) => {
  switch (kind) {
    case 'shift': return [t1 + value, t2 + value];
    case 'inf': return [Infinity, t2];
    case 'nan': return [t1, NaN];
    case 'swap': return [t2 + value, t2];
    case 'hold': return [t1, t2 + value];
    default: throw new Error(`unknown corruption ${kind}`);
  }
};

const client = new SyncClient(() => local(now));
let onPong = null;
let firstSync = null;
const send = (pingId, clientPingTime) => {
  const up = next('up', now);
  if (up === null) return;
  const t1 = now + up;
  const t2 = t1 + processing;
  const down = next('down', t2);
  if (down === null) return;
  let s1 = t1, s2 = t2;
  if (corruptions.length && corruptions[0][0] <= t2) {
    const [, kind, value] = corruptions.shift();
    [s1, s2] = corrupt(kind, value, t1, t2);
  }
  push(t2 + down, 'net', 0, () => onPong(pingId, clientPingTime, s1, s2));
};
// Started as a timer at t = 0, so a device asleep at 0 starts when it wakes (as sim.py's
// first probe).
push(0, 'timer', 0, () => client.start(
  send,
  (callback) => { onPong = callback; },
  (report) => {
    if (firstSync === null && (report.status === 'training' || report.status === 'sync')) firstSync = now;
  },
));

const n = Math.floor(duration / evalDt);
const t = new Array(n);
const error = new Array(n);
const asleep = new Array(n);
let nonFinite = 0;
let gi = 0;
const gridUntil = (te) => {
  for (; gi < n && gi * evalDt < te; gi++) {
    const tt = gi * evalDt;
    t[gi] = tt;
    asleep[gi] = wakeTime(tt) !== null;
    if (firstSync === null || asleep[gi]) {
      error[gi] = null;
      continue;
    }
    const e = client.getSyncTime(local(tt)) - tt;
    if (Number.isFinite(e)) {
      error[gi] = e;
    } else {
      error[gi] = 1e9;
      nonFinite++;
    }
  }
};
while (queue.length && queue[0][0] < duration) {
  const [te, , kind, id, fn] = pop();
  gridUntil(te);
  now = te;
  if (kind === 'timer' && id !== 0 && !liveTimers.has(id)) continue; // cancelled
  const wake = wakeTime(te);
  if (wake !== null) { // asleep: timers fire and buffered replies are read when it wakes
    push(wake, kind, id, fn);
    continue;
  }
  if (kind === 'timer' && id !== 0) liveTimers.delete(id);
  fn();
}
gridUntil(Infinity);
process.stdout.write(JSON.stringify({ t, error, firstSync, asleep, nonFinite }));
