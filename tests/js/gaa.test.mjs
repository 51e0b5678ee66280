// The Web Audio GAA engine against the Python reference renderer (tests/vectors/gaa.json).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import { Engine, LEVEL, leaderChange, polarityChanges } from '../../src/collective_sync/web/gaa/engine.js';

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

test('a leader writes the same cycle anchors as the Python leader', () => {
  const leader = new Engine();
  v.steps.forEach(({ at, changes }, i) => {
    const sent = leaderChange(leader, changes, at);
    leader.apply(sent, at);
    const expected = v.timeline[i].changes;
    assert.deepEqual(Object.keys(sent).sort(), Object.keys(expected).sort());
    for (const [path, value] of Object.entries(expected)) {
      if (path !== 'oscillators.cycleRef') assert.deepEqual(sent[path], value, path);
      else for (const k of Object.keys(value)) assert.ok(Math.abs(sent[path][k] - value[k]) < 1e-9, `${path}.${k}`);
    }
  });
});

test('polarity_sync payloads set the same engine paths as in Python', () => {
  assert.deepEqual(polarityChanges(v.polarity.payload), v.polarity.changes);
});
