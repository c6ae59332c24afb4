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
import { native } from '../src/native/addon.js';

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

describe('the native validator (the only one) and the communicators it guards', () => {
  it('a broadcast validates as a broadcast, never as an all-reduce; a broadcast that reduces is rejected', () => {
    for (let n = 1; n <= 9; n++) native().validateSchedule(broadcastSchedule(n, 10), n, 10);
    assert.throws(() => validateSchedule(broadcastSchedule(3, 10), { ranks: 3, length: 10 }), (e: Error) => e instanceof ScheduleError && /must plan an all-reduce/.test(e.message));
    const { collective: _, ...unmarked } = broadcastSchedule(3, 10);
    assert.throws(() => validateSchedule(unmarked, { ranks: 3, length: 10 }), /sums towers 0 only/);
    const reducing = { name: 'b', collective: 'broadcast', phases: [[[], [[REDUCE, 0, 0, 10]], []], [[], [], [[COPY, 1, 0, 10]]]] };
    assert.throws(() => native().validateSchedule(reducing, 3, 10), /tower 1's \[0, 10\) is not tower 0's values copied verbatim/);
    assert.throws(() => native().validateSchedule({ ...reducing, collective: 'gather' }, 3, 10), /collective must be 'all-reduce'/);
  });

  it('property: dropping any non-empty step of a valid schedule, or flipping its kind, is rejected', () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 6 }), fc.integer({ min: 1, max: 40 }), fc.constantFrom('ring', 'tree', 'naive'), fc.nat(), fc.boolean(), (ranks, length, algo, pick, drop) => {
        const req = { ranks, length };
        const s = algo === 'ring' ? ringSchedule(req, 3) : algo === 'tree' ? treeSchedule(req, 5) : naiveSchedule(req);
        validateSchedule(s, req);
        const where: Array<[number, number, number]> = [];
        s.phases.forEach((ph, p) => ph.forEach((steps, r) => steps.forEach((st, k) => st[3] > 0 && where.push([p, r, k]))));
        const [p, r, k] = where[pick % where.length]!;
        const broken: Schedule = JSON.parse(JSON.stringify(s));
        const steps = broken.phases[p]![r]!;
        if (drop) steps.splice(k, 1);
        else steps[k]![0] = steps[k]![0] === REDUCE ? COPY : REDUCE;
        assert.throws(() => validateSchedule(broken, req), ScheduleError);
      }),
      { numRuns: 300, seed: 11 },
    );
  });

  it('a communicator runs its own copy: a schedule mutated by JS after it was accepted changes nothing; a bad one is refused by setCommSchedule', async () => {
    const nat = native();
    const devs = [nat.openDevice('cpu', 70), nat.openDevice('cpu', 71), nat.openDevice('cpu', 72)];
    const L = 10;
    const bufs = devs.map((d) => nat.alloc(d.id, L, 'f32'));
    const schedule = ringSchedule({ ranks: 3, length: L });
    const comm = nat.createComm(bufs, schedule, 20_000);
    const progs = devs.map((d, rank) => nat.compile(d.id, [{ kernel: '@collective', inputs: [], outputs: [], attrs: { comm, rank } }]));
    const allReduce = async () => {
      bufs.forEach((b, r) => nat.write(b, Float32Array.from({ length: L }, (_, i) => i + 100 * r)));
      await Promise.all(progs.map((p) => nat.run(p)));
      return bufs.map((b) => Array.from(nat.read(b)));
    };
    const want = Array.from({ length: L }, (_, i) => 3 * i + 300);
    try {
      schedule.phases.forEach((ph) => ph.forEach((steps) => steps.forEach((st) => (st[1] = 99)))); // garbage peers
      schedule.phases.length = 1;
      assert.deepEqual(await allReduce(), [want, want, want]);
      assert.throws(() => nat.setCommSchedule(comm, { name: 'half', phases: [[[[REDUCE, 1, 0, 2]], [], []]] }), /schedule 'half' for 3 towers and 10 elements: .*sums towers/);
      assert.throws(() => nat.createComm(bufs, { name: 'racy', phases: [[[[REDUCE, 1, 0, 4]], [[REDUCE, 0, 0, 4]], []]] }, 1000), /writes \[0, 4\) while tower 1 reads/);
      assert.deepEqual(await allReduce(), [want, want, want], 'the refused schedule changed nothing');
      nat.setCommSchedule(comm, treeSchedule({ ranks: 3, length: L }));
      assert.deepEqual(await allReduce(), [want, want, want]);
    } finally {
      progs.forEach((p) => nat.releaseProgram(p));
      nat.releaseComm(comm);
      bufs.forEach((b) => nat.free(b));
      devs.forEach((d) => nat.closeDevice(d.id));
    }
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
