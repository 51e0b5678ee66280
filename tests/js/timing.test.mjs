// The browser SDK's timing core against the vectors written by the Python implementation
// (tests/vectors/timing.json, from collective_sync.timing.vectors). Run: node --test tests/js/
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import { DisciplinedClock } from '../../src/collective_sync/web/sdk/clock.js';
import { JitterBuffer } from '../../src/collective_sync/web/sdk/jitter.js';
import { Scheduler } from '../../src/collective_sync/web/sdk/scheduler.js';

const vectors = JSON.parse(readFileSync(new URL('../vectors/timing.json', import.meta.url), 'utf8'));

const close = (actual, expected, tol, what) => {
  assert.ok(Math.abs(actual - expected) <= tol, `${what}: ${actual} vs ${expected} (tol ${tol})`);
};

for (const { name, steps } of vectors.clock) {
  test(`clock discipline matches Python: ${name} (${steps.length} exchanges)`, () => {
    const clock = new DisciplinedClock();
    steps.forEach((step, i) => {
      const [t0, t1, t2, t3] = step.sample;
      const est = clock.addSample({ t0, t1, t2, t3 });
      const where = `${name} step ${i}`;
      if (step.estimate === null) {
        assert.equal(est, null, where);
      } else {
        close(est.offset, step.estimate.offset, 1e-9, `${where} offset`);
        close(est.skew, step.estimate.skew, 1e-9, `${where} skew`);
        close(est.delay, step.estimate.delay, 1e-9, `${where} delay`);
        close(est.error, step.estimate.error, 1e-9, `${where} error`);
        assert.equal(est.samples, step.estimate.samples, `${where} samples`);
      }
      assert.equal(clock.locked, step.locked, `${where} locked`);
      close(clock.freq, step.freq, 1e-9, `${where} freq`);
      close(clock.toNetwork(step.probe), step.network, 1e-7, `${where} network time`);
      close(clock.toLocal(step.network), step.backToLocal, 1e-7, `${where} inverse`);
      close(clock.nextProbeInterval(), step.nextProbeInterval, 1e-9, `${where} probe interval`);
    });
  });
}

test('jitter buffer matches Python: order, lateness, stats, delay suggestion', () => {
  const jb = new JitterBuffer(vectors.jitter.delay);
  for (const op of vectors.jitter.ops) {
    if (op.op === 'push') {
      const late = jb.push({ ...op.item }, op.arrival);
      assert.deepEqual(late.map((i) => i.seq), op.late);
      close(jb.suggestedDelay, op.suggestedDelay, 1e-9, 'suggested delay');
    } else {
      assert.deepEqual(jb.popDue(op.now).map((i) => i.seq), op.due);
      assert.equal(jb.nextDue(), op.nextDue);
    }
  }
  assert.deepEqual(jb.stats, vectors.jitter.stats);
});

test('scheduler matches Python: network-time order, ties by insertion, local mapping', () => {
  const v = vectors.scheduler;
  const sched = new Scheduler((net) => net + v.offset);
  for (const [at, p] of v.schedule) sched.schedule(at, p);
  assert.equal(sched.nextLocalDeadline(), v.nextLocal);
  for (const [now, expected] of v.popAt) assert.deepEqual(sched.popDue(now), expected);
});
