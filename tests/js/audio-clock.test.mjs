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
