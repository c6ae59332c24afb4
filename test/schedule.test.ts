// Collective schedules: the built-ins pass the validator for many sizes; malformed or wrong schedules are rejected.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ringSchedule } from '../src/scheduler/ring.js';
import { treeSchedule } from '../src/scheduler/tree.js';
import { naiveSchedule } from '../src/scheduler/naive.js';
import { broadcastSchedule } from '../src/scheduler/broadcast.js';
import { validateSchedule, ScheduleError, COPY, REDUCE, type Schedule } from '../src/scheduler/schedule.js';
import { planReduction } from '../src/scheduler/select.js';
import { shardSizes } from '../src/coordinator/shard.js';

describe('built-in schedules', () => {
  it('ring, tree and naive are valid all-reduces for 1..9 towers and odd lengths, with and without chunking', () => {
    for (let n = 1; n <= 9; n++)
      for (const length of [1, 2, 7, 100, 1001]) {
        for (const s of [ringSchedule({ ranks: n, length }), ringSchedule({ ranks: n, length }, 3), treeSchedule({ ranks: n, length }), treeSchedule({ ranks: n, length }, 64), naiveSchedule({ ranks: n, length })])
          validateSchedule(s, { ranks: n, length });
      }
  });

  it('ring has 2(n-1) phases, tree 2*ceil(log2 n)', () => {
    assert.equal(ringSchedule({ ranks: 4, length: 100 }).phases.length, 6);
    assert.equal(treeSchedule({ ranks: 5, length: 100 }).phases.length, 6);
  });

  it('the broadcast copies tower 0 everywhere', () => {
    const b = broadcastSchedule(5, 10);
    assert.equal(b.phases.length, 3);
    assert.ok(b.phases.flat(2).every((st) => st[0] === COPY));
  });
});

describe('validation of user schedules', () => {
  const req = { ranks: 2, length: 4 };
  const reject = (s: unknown, re: RegExp) => assert.throws(() => validateSchedule(s as Schedule, req), (e: Error) => e instanceof ScheduleError && re.test(e.message));

  it('rejects malformed input', () => {
    reject(null, /expected \{ name, phases/);
    reject({ name: 'x', phases: [[[]]] }, /must list exactly 2 towers/);
    reject({ name: 'x', phases: [[[[REDUCE, 1, 0]], []]] }, /\[kind, peer, offset, length\]/);
    reject({ name: 'x', phases: [[[[7, 1, 0, 4]], []]] }, /kind must be 0/);
    reject({ name: 'x', phases: [[[[REDUCE, 0, 0, 4]], []]] }, /peer must be another tower/);
    reject({ name: 'x', phases: [[[[REDUCE, 1, 2, 4]], []]] }, /outside \[0, 4\)/);
  });

  it('rejects conflicts, double counting, missing sums and separately computed sums', () => {
    reject({ name: 'x', phases: [[[[REDUCE, 1, 0, 4]], [[REDUCE, 0, 0, 4]]]] }, /writes .* while tower 1 reads/);
    reject({ name: 'x', phases: [[[[REDUCE, 1, 0, 4]], []], [[[REDUCE, 1, 0, 4]], []]] }, /already counts/);
    reject({ name: 'x', phases: [[[[REDUCE, 1, 0, 4]], []]] }, /sums towers 1 only|sums towers 1$/);
    // Both towers reduce on their own in two phases: correct sums, but not bit-identical replicas.
    reject({ name: 'x', phases: [[[[REDUCE, 1, 0, 4]], []], [[], [[REDUCE, 0, 0, 4]]]] }, /already counts|separately computed/);
  });

  it('a bad custom strategy is rejected by planReduction with the reason', () => {
    assert.throws(() => planReduction({ custom: { name: 'mine', plan: () => ({ name: 'mine', phases: [] }) } }, { ranks: 3, length: 9 }), /sums towers/);
    assert.throws(() => planReduction({ algorithm: 'rin' as 'ring' }, { ranks: 3, length: 9 }), /reduction\.algorithm/);
    const s = planReduction({ custom: { name: 'naive-again', plan: naiveSchedule } }, { ranks: 3, length: 9 });
    assert.equal(s.name, 'naive');
  });

  it('fuzz: random schedules either validate or throw ScheduleError, never anything else', () => {
    const step = fc.tuple(fc.integer({ min: -1, max: 2 }), fc.integer({ min: -1, max: 3 }), fc.integer({ min: -2, max: 6 }), fc.integer({ min: -1, max: 6 }));
    fc.assert(
      fc.property(fc.array(fc.array(fc.array(step, { maxLength: 3 }), { minLength: 2, maxLength: 4 }), { maxLength: 6 }), fc.integer({ min: 2, max: 4 }), (phases, ranks) => {
        try {
          validateSchedule({ name: 'fuzz', phases: phases as Schedule['phases'] }, { ranks, length: 5 });
        } catch (e) {
          if (!(e instanceof ScheduleError)) throw e;
        }
      }),
      { numRuns: 500, seed: 42 },
    );
  });
});

describe('shard sizes (seed 003)', () => {
  it('128 over 3 is 43/43/42; any batch over any tower count sums exactly', () => {
    assert.deepEqual(shardSizes(128, 3), [43, 43, 42]);
    for (let n = 1; n <= 8; n++) for (let b = n; b <= 300; b += 7) assert.equal(shardSizes(b, n).reduce((a, x) => a + x, 0), b);
    assert.deepEqual(shardSizes(10, 2, [3, 1]), [7, 3]);
    assert.throws(() => shardSizes(2, 3), /cannot be split over 3 towers/);
  });
});
