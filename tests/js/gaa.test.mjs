// The Web Audio GAA engine against the Python reference renderer (tests/vectors/gaa.json).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import { Engine, LEVEL } from '../../src/collective_sync/web/gaa/engine.js';

const v = JSON.parse(readFileSync(new URL('../vectors/gaa.json', import.meta.url), 'utf8'));

// Tolerance 1e-7 (-140 dB re full scale): the geometry's phase is omega x network time, ~1e10 rad,
// where two libm cosines may differ in the last bit.
test('renders match the Python reference sample by sample', () => {
  const engine = new Engine();
  for (const step of v.timeline) engine.apply(step.changes, step.at);
  for (const { t0, samples } of v.renders) {
    const out = engine.render(t0, v.frames, v.sampleRate);
    let worst = 0;
    samples.forEach((s, i) => { worst = Math.max(worst, Math.abs(out[i] - s)); });
    assert.ok(worst < 1e-7, `window at ${t0}: max difference ${worst}`);
    assert.ok(out.every((s) => Math.abs(s) < LEVEL));
  }
});
