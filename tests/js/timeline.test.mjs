// The audio thread's pure parts: changes wait for their instant and come out in due order.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ChangeQueue } from '../../src/collective_sync/web/gaa/timeline.js';

test('changes come out in due order, state before control on a tie, arrival order otherwise', () => {
  const q = new ChangeQueue();
  q.push({ c: 1 }, 5, 1);
  q.push({ s: 1 }, 5, 0);
  q.push({ early: 1 }, 3, 1);
  q.push({ s: 2 }, 5, 0);
  assert.equal(q.popDue(2.9), null);
  assert.deepEqual(q.popDue(3), { changes: { early: 1 }, at: 3, rank: 1 });
  assert.equal(q.popDue(4.99), null);
  assert.deepEqual([q.popDue(5), q.popDue(5), q.popDue(5)].map((x) => x.changes), [{ s: 1 }, { s: 2 }, { c: 1 }]);
  assert.equal(q.popDue(1e9), null);
});
