// Co-simulation of @ircam/sync's SyncClient over a pre-drawn packet trace (see bench/clock.py).
//
// Reads one JSON job on stdin: {offset, skew, duration, evalDt, processing, seed,
// trace: {up, down, routeChangeAt, routeChangeAdd}} and writes {t, error, firstSync} on stdout.
// Time is virtual: setTimeout/clearTimeout and Math.random are replaced, so a 300 s run takes
// well under a second and is reproducible. True time is the server's clock.
import { readFileSync } from 'node:fs';
import clientModule from '@ircam/sync/client/index.js';

const SyncClient = clientModule.default ?? clientModule.SyncClient ?? clientModule;

const job = JSON.parse(readFileSync(0, 'utf8'));
const { offset, skew, duration, evalDt, processing, trace } = job;

// Virtual clock and timer queue.
let now = 0;
let seq = 0;
const queue = []; // [time, seq, fn]
const push = (time, fn) => {
  const item = [time, seq++, fn];
  let i = queue.length;
  queue.push(item);
  while (i > 0) { // binary-heap sift-up
    const p = (i - 1) >> 1;
    if (queue[p][0] < time || (queue[p][0] === time && queue[p][1] < item[1])) break;
    [queue[p], queue[i]] = [queue[i], queue[p]];
    i = p;
  }
  return item[1];
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
      const less = (a, b) => queue[a][0] < queue[b][0] || (queue[a][0] === queue[b][0] && queue[a][1] < queue[b][1]);
      if (l < queue.length && less(l, m)) m = l;
      if (r < queue.length && less(r, m)) m = r;
      if (m === i) break;
      [queue[m], queue[i]] = [queue[i], queue[m]];
      i = m;
    }
  }
  return top;
};
const cancelled = new Set();
globalThis.setTimeout = (fn, ms = 0) => push(now + ms / 1000, fn);
globalThis.clearTimeout = (id) => cancelled.add(id);

let rngState = (job.seed >>> 0) || 1; // xorshift32: deterministic Math.random for its ping series
Math.random = () => {
  rngState ^= rngState << 13; rngState >>>= 0;
  rngState ^= rngState >>> 17;
  rngState ^= rngState << 5; rngState >>>= 0;
  return rngState / 4294967296;
};

const local = (t) => t + offset + skew * t; // the client's oscillator
const idx = { up: 0, down: 0 };
const next = (dir, t) => {
  const draws = trace[dir];
  const d = draws[idx[dir]++ % draws.length];
  if (d === null) return null;
  return (trace.routeChangeAt !== null && t >= trace.routeChangeAt) ? d + trace.routeChangeAdd : d;
};

const client = new SyncClient(() => local(now));
let onPong = null;
let firstSync = null;
client.start(
  (pingId, clientPingTime) => {
    const up = next('up', now);
    if (up === null) return;
    const t1 = now + up;
    const t2 = t1 + processing;
    const down = next('down', t2);
    if (down === null) return;
    push(t2 + down, () => onPong(pingId, clientPingTime, t1, t2));
  },
  (callback) => { onPong = callback; },
  (report) => {
    if (firstSync === null && (report.status === 'training' || report.status === 'sync')) firstSync = now;
  },
);

const n = Math.floor(duration / evalDt);
const t = new Array(n);
const error = new Array(n);
let gi = 0;
while (queue.length && queue[0][0] < duration) {
  const [te, id, fn] = pop();
  while (gi < n && gi * evalDt < te) {
    const tt = gi * evalDt;
    t[gi] = tt;
    error[gi] = firstSync === null ? null : client.getSyncTime(local(tt)) - tt;
    gi++;
  }
  now = te;
  if (!cancelled.has(id)) fn();
}
for (; gi < n; gi++) { t[gi] = gi * evalDt; error[gi] = client.getSyncTime(local(gi * evalDt)) - gi * evalDt; }
process.stdout.write(JSON.stringify({ t, error, firstSync }));
