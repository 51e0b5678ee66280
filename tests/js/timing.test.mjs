// The browser SDK's timing core against the vectors written by the Python implementation
// (tests/vectors/timing.json, from collective_sync.timing.vectors). Run: node --test tests/js/
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import { DisciplinedClock, PLL_DEFAULTS } from '../../src/collective_sync/web/sdk/clock.js';
import { ClockEstimator, ESTIMATOR_DEFAULTS } from '../../src/collective_sync/web/sdk/estimator.js';
import {
  ADAPTIVE_DEFAULTS, FORGET_EVERY, JITTER_DEFAULTS, JitterBuffer,
} from '../../src/collective_sync/web/sdk/jitter.js';
import { Scheduler } from '../../src/collective_sync/web/sdk/scheduler.js';

const vectors = JSON.parse(readFileSync(new URL('../vectors/timing.json', import.meta.url), 'utf8'));

const close = (actual, expected, tol, what) => {
  assert.ok(Math.abs(actual - expected) <= tol, `${what}: ${actual} vs ${expected} (tol ${tol})`);
};

/** Drained events against the recorded [kind, local, amount, duration] lists. */
const sameEvents = (actual, expected, where) => {
  assert.equal(actual.length, expected.length, `${where} event count`);
  actual.forEach((e, k) => {
    const [kind, local, amount, duration] = expected[k];
    assert.equal(e.kind, kind, `${where} event ${k} kind`);
    close(e.local, local, 1e-7, `${where} event ${k} local`);
    close(e.amount, amount, 1e-7, `${where} event ${k} amount`);
    close(e.duration, duration, 1e-7, `${where} event ${k} duration`);
  });
};

for (const { name, steps } of vectors.clock) {
  test(`clock discipline matches Python: ${name} (${steps.length} steps)`, () => {
    const clock = new DisciplinedClock();
    steps.forEach((step, i) => {
      const where = `${name} step ${i}`;
      if ('read' in step) { // the host reading its clock (where the local clock goes back)
        close(clock.read(step.read), step.network, 1e-7, `${where} read`);
        sameEvents(clock.drainEvents(), step.events, where);
        return;
      }
      // Corrupt replies carry non-finite stamps, written as "Infinity", "-Infinity" or "NaN".
      const [t0, t1, t2, t3] = step.sample.map(Number);
      const est = clock.addSample({ t0, t1, t2, t3 });
      if (step.estimate === null) {
        assert.equal(est, null, where);
      } else {
        close(est.offset, step.estimate.offset, 1e-9, `${where} offset`);
        close(est.skew, step.estimate.skew, 1e-9, `${where} skew`);
        close(est.delay, step.estimate.delay, 1e-9, `${where} delay`);
        close(est.error, step.estimate.error, 1e-9, `${where} error`);
        close(est.skewError, step.estimate.skewError, 1e-9, `${where} skew error`);
        assert.equal(est.samples, step.estimate.samples, `${where} samples`);
      }
      assert.equal(clock.locked, step.locked, `${where} locked`);
      close(clock.freq, step.freq, 1e-9, `${where} freq`);
      close(clock.toNetwork(step.probe), step.network, 1e-7, `${where} network time`);
      close(clock.toLocal(step.network), step.backToLocal, 1e-7, `${where} inverse`);
      close(clock.errorAt(step.probe), step.errorAt, 1e-9, `${where} error bound`);
      close(clock.nextProbeInterval(), step.nextProbeInterval, 1e-9, `${where} probe interval`);
      assert.equal(clock.estimator.rejected, step.rejected, `${where} rejected`);
      assert.equal(clock.estimator.discontinuities, step.discontinuities, `${where} discontinuities`);
      sameEvents(clock.drainEvents(), step.events, where);
    });
  });
}

/** Replays a recorded jitter run; returns the buffer. */
function replayJitter(v, buffer) {
  for (const op of v.ops) {
    if (op.op === 'push') {
      const late = buffer.push({ ...op.item }, op.arrival);
      assert.deepEqual(late.map((i) => i.seq), op.late);
      close(buffer.suggestedDelay, op.suggestedDelay, 1e-9, 'suggested delay');
    } else {
      assert.deepEqual(buffer.popDue(op.now).map((i) => i.seq), op.due);
      assert.equal(buffer.nextDue(), op.nextDue);
    }
  }
  assert.deepEqual(buffer.stats, v.stats);
  return buffer;
}

test('jitter buffer matches Python: order, lateness, stats, delay suggestion', () => {
  const jb = replayJitter(vectors.jitter, new JitterBuffer(vectors.jitter.delay));
  assert.equal(jb.newest.size, vectors.jitter.remembered);
});

test('jitter buffer matches Python with a bounded memory: forgetting, remembered keys', () => {
  const v = vectors.jitterBounded;
  const jb = replayJitter(v, new JitterBuffer(v.delay, {}, { memory: v.memory, maxKeys: v.maxKeys }));
  assert.equal(jb.newest.size, v.remembered);
});

test('scheduler matches Python: network-time order, ties by insertion, local mapping', () => {
  const v = vectors.scheduler;
  const sched = new Scheduler((net) => net + v.offset);
  for (const [at, p] of v.schedule) sched.schedule(at, p);
  assert.equal(sched.nextLocalDeadline(), v.nextLocal);
  for (const [now, expected] of v.popAt) assert.deepEqual(sched.popDue(now), expected);
});

test('tuning constants match the Python dataclasses', () => {
  const camel = (o) => Object.fromEntries(
    Object.entries(o).map(([k, val]) => [k.replace(/_([a-z])/g, (_, c) => c.toUpperCase()), val]),
  );
  const d = vectors.defaults;
  assert.deepEqual({ ...ESTIMATOR_DEFAULTS }, camel(d.estimator));
  assert.deepEqual({ ...PLL_DEFAULTS }, camel(d.pll));
  assert.deepEqual({ ...ADAPTIVE_DEFAULTS }, camel(d.adaptiveDelay));
  assert.deepEqual({ ...JITTER_DEFAULTS, forgetEvery: FORGET_EVERY }, d.jitter);
});

test('a starved host does not restart the window over and over, nor inflate its bound (implausible fits are not kept)', () => {
  // Half the trips wait ~100 ms (exponential) for a starved sender or reader; true offset 0.
  for (let seed = 1; seed <= 12; seed++) {
    let state = seed;
    const rnd = () => { state = (state * 1103515245 + 12345) % 2 ** 31; return state / 2 ** 31; };
    const expo = (mean) => -mean * Math.log(1 - rnd());
    const trip = () => 0.0005 + expo(rnd() < 0.5 ? 0.1 : 0.0005);
    const est = new ClockEstimator();
    let t = 1000;
    for (let k = 0; k < 600; k++) {
      t += 0.05 + 0.25 * rnd() + (rnd() < 0.2 ? expo(0.1) : 0);
      const t1 = t + trip();
      const t2 = t1 + 0.0001;
      const t3 = t2 + trip();
      est.add({ t0: t, t1, t2, t3 });
      t = t3;
    }
    assert.ok(est.discontinuities <= 3, `seed ${seed}: ${est.discontinuities} restarts`);
    assert.ok(Math.abs(est.last.skew) < 10e-6, `seed ${seed}: skew ${est.last.skew}`);
    assert.ok(est.pathExcess < 2e-3, `seed ${seed}: path excess ${est.pathExcess}`); // no negative best round trip
  }
});
