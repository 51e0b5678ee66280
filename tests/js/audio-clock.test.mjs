// The network-time -> AudioContext-time mapping, with a fake context whose audio clock runs
// 80 ppm fast and 23 ms behind (output latency), sampled with a little jitter.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { AudioClock, LineFit } from '../../src/collective_sync/web/sdk/audio-clock.js';

test('line fit recovers slope and offset from noisy pairs', () => {
  const fit = new LineFit(64);
  let seed = 7;
  const noise = () => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return (seed / 2 ** 31 - 0.5) * 2e-4; };
  for (let k = 0; k < 200; k++) {
    const local = 1_700_000_000 + k * 0.1;
    fit.add(local, 5 + (local - 1_700_000_000) * (1 + 80e-6) - 0.023 + noise());
  }
  assert.ok(Math.abs(fit.line.slope - (1 + 80e-6)) < 5e-6, `slope ${fit.line.slope}`);
  const local = 1_700_000_000 + 25;
  assert.ok(Math.abs(fit.at(local) - (5 + 25 * (1 + 80e-6) - 0.023)) < 1e-4);
  assert.ok(fit.residual < 2e-4);
});

test('network time maps through the disciplined clock onto context time', () => {
  let perfMs = 0;
  const ctx = {
    getOutputTimestamp: () => ({ performanceTime: perfMs, contextTime: 2 + (perfMs / 1000) * (1 + 80e-6) - 0.023 }),
  };
  const network = { toLocal: (t) => t - 3.5 }; // server time is 3.5 s ahead of this page's clock
  const clock = new AudioClock(ctx, { network }, (ms) => 1000 + ms / 1000);
  for (let k = 1; k <= 50; k++) { perfMs = k * 100; assert.ok(clock.sample()); }
  // A change due at network time T must be scheduled at the context time heard at local T - 3.5.
  const T = 1000 + 3.5 + 4.2;
  const expected = 2 + 4.2 * (1 + 80e-6) - 0.023;
  assert.ok(Math.abs(clock.contextTimeAt(T) - expected) < 1e-9);
  assert.ok(Math.abs(clock.driftPpm - 80) < 1e-3);
});

test('no pairs are taken before the context runs', () => {
  const clock = new AudioClock({ getOutputTimestamp: () => ({ performanceTime: 0, contextTime: 0 }) }, { network: {} });
  assert.equal(clock.sample(), false);
});

test('a jump of either clock starts the pairs afresh; jitter and drift do not', () => {
  let perfMs = 0;
  let ctxOffset = 2;
  let jitter = 0;
  const ctx = { getOutputTimestamp: () => ({ performanceTime: perfMs, contextTime: ctxOffset + (perfMs / 1000) * (1 + 100e-6) + jitter }) };
  const clock = new AudioClock(ctx, { network: { toLocal: (t) => t } }, (ms) => 1000 + ms / 1000);
  for (let k = 1; k <= 200; k++) {
    perfMs = k * 50;
    jitter = (k % 7 - 3) * 0.004; // ±12 ms of timestamp jitter
    clock.sample();
  }
  assert.equal(clock.jumps, 0);
  assert.equal(clock.fit.pairs.length, 64);
  // The context was suspended for 0.3 s: its clock now lags the local clock by 0.3 s more.
  ctxOffset -= 0.3;
  jitter = 0;
  for (let k = 201; k <= 260; k++) { perfMs = k * 50; clock.sample(); }
  assert.equal(clock.jumps, 1);
  assert.equal(clock.fit.pairs.length, 60); // only pairs after the jump
  const local = 1000 + 13;
  assert.ok(Math.abs(clock.contextTimeAtLocal(local) - (ctxOffset + 13 * (1 + 100e-6))) < 1e-9);
});

test('a slope from jittery pairs over a short span is bounded to what crystals differ by', async () => {
  const { networkMap, MAX_DRIFT } = await import('../../src/collective_sync/web/sdk/audio-clock.js');
  const fit = new LineFit(200);
  // 3 s of pairs whose jitter (±10 ms, rising) reads as a 0.6 % rate difference.
  for (let k = 0; k <= 60; k++) fit.add(k * 0.05, 5 + k * 0.05 * 1.006);
  const map = networkMap(fit, { toNetwork: (l) => l + 100 }, 8, 2);
  assert.ok(Math.abs(fit.line.slope - 1.006) < 1e-9);
  assert.ok(Math.abs(map.rate - 1 / (1 + MAX_DRIFT)) < 1e-9, `rate ${map.rate}`);
});
