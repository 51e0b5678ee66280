// The reconnect backoff (equal jitter), the same numbers as its Python twin client/backoff.py.
// Run: node --test tests/js/
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { BASE, CAP, backoffDelay } from '../../src/collective_sync/web/sdk/backoff.js';

test('constants', () => {
  assert.equal(BASE, 0.25);
  assert.equal(CAP, 8);
});

test('known values: half fixed, half scaled by rand', () => {
  assert.equal(backoffDelay(0, 0), 0.125);
  assert.equal(backoffDelay(0, 0.5), 0.1875);
  assert.equal(backoffDelay(1, 0), 0.25);
  assert.equal(backoffDelay(2, 1), 1);
  assert.equal(backoffDelay(3, 0.5), 1.5);
  assert.equal(backoffDelay(4, 0.25), 2.5);
  assert.equal(backoffDelay(5, 0), 4); // 0.25 * 32 = 8: the cap is reached here
  assert.equal(backoffDelay(6, 0), 4);
  assert.equal(backoffDelay(100, 0.5), 6);
  assert.equal(backoffDelay(2000, 0.999), 4 + 0.999 * 4); // 2 ** 2000 is Infinity: still capped
});

test('bounds: within [d/2, d] for every attempt, never above the cap, never decreasing', () => {
  for (let attempt = 0; attempt < 40; attempt++) {
    const d = Math.min(CAP, BASE * 2 ** attempt);
    for (const rand of [0, 1e-9, 0.1, 0.5, 0.9, 0.999999]) {
      const delay = backoffDelay(attempt, rand);
      assert.ok(delay >= d / 2 && delay <= d, `attempt ${attempt}, rand ${rand}: ${delay}`);
      assert.ok(delay <= CAP);
    }
    if (attempt) assert.ok(backoffDelay(attempt, 0) >= backoffDelay(attempt - 1, 0));
  }
});

test('rand defaults to Math.random and stays in bounds', () => {
  for (let i = 0; i < 1000; i++) {
    const delay = backoffDelay(3);
    assert.ok(delay >= 1 && delay <= 2, String(delay));
  }
});
