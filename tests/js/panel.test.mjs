// The clock panel's one sentence for people.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { clockWords } from '../../src/collective_sync/web/demo/panel.js';

test('the clock status is one sentence in words, its bound in ms', () => {
  assert.equal(clockWords(false, true, 1e-4), 'Offline — reconnecting…');
  assert.equal(clockWords(true, false, 1e-4), 'Finding the shared time…');
  assert.equal(clockWords(true, true, Infinity), 'Finding the shared time…');
  assert.equal(clockWords(true, true, 0.00012), 'In sync, ±0.1 ms');
  assert.equal(clockWords(true, true, 0.0004), 'In sync, ±0.4 ms');
  assert.equal(clockWords(true, true, 0.0026), 'In sync, ±3 ms');
});
