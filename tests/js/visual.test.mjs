// The demo's picture of the geometry: the knot, the traversal angle at network time, the colour.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Engine } from '../../src/collective_sync/web/gaa/engine.js';
import { describe, knotPoint, polarityColour, visualModel } from '../../src/collective_sync/web/demo/visual.js';

test('the traversal angle is the engine\'s θ = φ0 + ω·t at network time, through its ramps', () => {
  const engine = new Engine();
  engine.apply({ 'geometry.omega': 2, 'geometry.phi0': 0.25 }, 100);
  const t = 1000.5;
  assert.equal(visualModel(engine, t).theta, 0.25 + 2 * t);
  // Mid-ramp (RAMP = 50 ms after a change), as the audio thread computes it.
  engine.apply({ 'geometry.omega': 4 }, 2000);
  const m = visualModel(engine, 2000.025);
  assert.ok(Math.abs(m.omega - 3) < 1e-9);
  assert.ok(Math.abs(m.theta - (0.25 + 3 * 2000.025)) < 1e-6);
});

test('the knot winds n times round the tube while going once round the ring', () => {
  const p0 = knotPoint(1, 0.3, 3, 0);
  assert.deepEqual([p0.x, p0.y, p0.z], [1.3, 0, 0]);
  const quarter = knotPoint(1, 0.3, 3, Math.PI / 6); // n·θ = π/2: on top of the tube
  assert.ok(Math.abs(quarter.z - 0.3) < 1e-12);
  assert.ok(Math.abs(Math.hypot(quarter.x, quarter.y) - 1) < 1e-12);
});

test('the colour leans to the louder of the light and dark channels', () => {
  assert.deepEqual(polarityColour(1, 0), [255, 210, 122]);
  assert.deepEqual(polarityColour(0, 1), [138, 125, 255]);
  assert.deepEqual(polarityColour(0, 0), polarityColour(0.5, 0.5));
  const engine = new Engine();
  engine.apply({ 'polarity.balance': -1 }, 0);
  const m = visualModel(engine, 10);
  assert.ok(m.light > 0 && m.dark === 0);
  assert.match(describe(m), /winding 3, turning at 0\.50 radians per second, leaning to the light/);
});
