// The communicator's execution plan (Note [Fused steps]) and the sharded update's collectives
// (src/scheduler/shards.ts): run natively on CPU towers, each result is compared bit for bit with the schedule run
// step by step in JS in float32 (what the unfused executor computes), and the replicas with each other.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { native } from '../src/native/addon.js';
import { ringSchedule } from '../src/scheduler/ring.js';
import { treeSchedule } from '../src/scheduler/tree.js';
import { naiveSchedule } from '../src/scheduler/naive.js';
import { allGatherSchedule, reduceScatterSchedule, shardBounds, SHARD_ALIGN } from '../src/scheduler/shards.js';
import { COPY, REDUCE, type Schedule } from '../src/scheduler/schedule.js';
import { testRandom } from '../src/reference/relerr.js';

const nat = native();
const MAX_RANKS = 4;
const devs = Array.from({ length: MAX_RANKS }, (_, r) => nat.openDevice('cpu', 60 + r).id);
after(() => devs.forEach((d) => nat.closeDevice(d)));

/** The schedule run step by step, in order, in float32 (a phase's steps never conflict, so order within it is free). */
function simulate(s: Schedule, inputs: Float32Array[]): Float32Array[] {
  const bufs = inputs.map((x) => Float32Array.from(x));
  for (const phase of s.phases)
    phase.forEach((steps, r) => {
      for (const [kind, peer, off, len] of steps) {
        const d = bufs[r]!;
        const src = bufs[peer]!;
        for (let i = off; i < off + len; i++) d[i] = kind === REDUCE ? d[i]! + src[i]! : src[i]!;
      }
    });
  return bufs;
}

/** Runs `s` once on `inputs.length` CPU towers; returns every tower's buffer after it and the comm's stats. */
async function runNative(s: Schedule, inputs: Float32Array[]): Promise<{ out: Float32Array[]; phases: number; fused: number }> {
  const n = inputs.length;
  const length = inputs[0]!.length;
  const bufs = inputs.map((x, r) => {
    const b = nat.alloc(devs[r]!, length, 'f32');
    nat.write(b, x);
    return b;
  });
  const comm = nat.createComm(bufs, s, 30_000);
  const progs = bufs.map((_, rank) => nat.compile(devs[rank]!, [{ kernel: '@collective', inputs: [], outputs: [], attrs: { comm, rank } }]));
  try {
    await Promise.all(progs.map((p) => nat.runWith(p, [], [])));
    const out = bufs.map((b) => Float32Array.from(nat.read(b) as ArrayLike<number>));
    const st = nat.commStats(comm, 0);
    assert.equal(out.length, n);
    return { out, phases: st.phases, fused: st.fused };
  } finally {
    progs.forEach((p) => nat.releaseProgram(p));
    nat.releaseComm(comm);
    bufs.forEach((b) => nat.free(b));
  }
}

function inputsFor(n: number, length: number, seed: number): Float32Array[] {
  const rand = testRandom(seed);
  return Array.from({ length: n }, () => Float32Array.from({ length }, () => rand() * 2 - 1));
}

function sameBits(a: Float32Array, b: Float32Array, what: string): void {
  assert.equal(a.length, b.length, `${what}: lengths`);
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) assert.fail(`${what}: element ${i} is ${a[i]}, expected ${b[i]} bit for bit`);
}

describe('fused reduce-and-push steps (Note [Fused steps])', () => {
  it('ring on 2 towers runs as one phase, each tower pushing its sums into the other, bit-identical to the schedule', async () => {
    const length = 1001;
    const s = ringSchedule({ ranks: 2, length });
    const inputs = inputsFor(2, length, 1);
    const { out, phases, fused } = await runNative(s, inputs);
    assert.equal(s.phases.length, 2);
    assert.equal(phases, 1, 'the all-gather phase is dropped');
    assert.equal(fused, 2);
    const want = simulate(s, inputs);
    out.forEach((o, r) => sameBits(o, want[r]!, `tower ${r}`));
    sameBits(out[0]!, out[1]!, 'replicas');
  });

  for (const [name, plan] of [
    ['ring', (n: number, length: number) => ringSchedule({ ranks: n, length })],
    ['ring, segmented', (n: number, length: number) => ringSchedule({ ranks: n, length }, 100)],
    ['tree', (n: number, length: number) => treeSchedule({ ranks: n, length })],
    ['naive', (n: number, length: number) => naiveSchedule({ ranks: n, length })],
  ] as const) {
    it(`${name} on 2..4 towers: the same bytes as the schedule run step by step, on every tower`, async () => {
      for (let n = 2; n <= MAX_RANKS; n++) {
        for (const length of [1, 17, 4099]) {
          const s = plan(n, length) as Schedule;
          const inputs = inputsFor(n, length, 10 * n + length);
          const { out, phases } = await runNative(s, inputs);
          assert.ok(phases <= s.phases.length, `${name} n=${n}: ${phases} phases run, the schedule has ${s.phases.length}`);
          const want = simulate(s, inputs);
          out.forEach((o, r) => sameBits(o, want[r]!, `${name} n=${n} length=${length} tower ${r}`));
          for (let r = 1; r < n; r++) sameBits(out[r]!, out[0]!, `${name} n=${n} length=${length} replica ${r}`);
        }
      }
    });
  }

  it('naive on 2..4 towers runs as one phase (tower 0 sums every buffer, then pushes the sum into all), bit-identical to the schedule', async () => {
    for (let n = 2; n <= MAX_RANKS; n++) {
      const length = 256; // 1 KB: the small-message path
      const s = naiveSchedule({ ranks: n, length });
      const inputs = inputsFor(n, length, 7 * n);
      const { out, phases, fused } = await runNative(s, inputs);
      assert.equal(s.phases.length, 2);
      assert.equal(phases, 1, `naive n=${n}: the broadcast phase is dropped`);
      assert.equal(fused, n - 1);
      const want = simulate(s, inputs);
      out.forEach((o, r) => sameBits(o, want[r]!, `naive n=${n} tower ${r}`));
    }
  });

  it('ring on 4 towers drops one phase (the first all-gather copies become pushes)', async () => {
    const length = 4096;
    const s = ringSchedule({ ranks: 4, length });
    const { phases, fused } = await runNative(s, inputsFor(4, length, 3));
    assert.equal(phases, s.phases.length - 1);
    assert.equal(fused, 4);
  });
});

describe('sharded collectives (reduce-scatter, all-gather)', () => {
  it('shards tile the buffer in rank order on cache-line bounds', () => {
    for (const length of [0, 1, 15, 16, 17, 1000, 100_003])
      for (let n = 1; n <= 5; n++) {
        const s = shardBounds(length, n);
        assert.equal(s.length, n);
        let at = 0;
        for (const [off, len] of s) {
          assert.equal(off, at);
          assert.ok(len >= 0);
          if (off < length) assert.equal(off % SHARD_ALIGN, 0);
          at = off + len;
        }
        assert.equal(at, length);
        const sizes = s.map(([, len]) => len).filter((_, r) => r < n - 1);
        if (length >= n * SHARD_ALIGN) assert.ok(Math.max(...sizes) - Math.min(...sizes) <= SHARD_ALIGN, `${length}/${n}: ${sizes}`);
      }
  });

  it('a reduce-scatter leaves shard r summed at tower r, then an all-gather gives every tower every shard verbatim', async () => {
    for (let n = 2; n <= MAX_RANKS; n++) {
      const length = 1003;
      const shards = shardBounds(length, n);
      const inputs = inputsFor(n, length, 100 + n);
      const rs = reduceScatterSchedule(shards);
      nat.validateSchedule(rs, n, length);
      const { out } = await runNative(rs, inputs);
      const want = simulate(rs, inputs);
      shards.forEach(([off, len], r) => {
        sameBits(out[r]!.subarray(off, off + len), want[r]!.subarray(off, off + len), `n=${n} shard ${r}`);
        for (let i = off; i < off + len; i++) {
          const sum = inputs.reduce((a, x) => a + x[i]!, 0);
          assert.ok(Math.abs(out[r]![i]! - sum) < 1e-5, `n=${n} element ${i}: ${out[r]![i]} vs ${sum}`);
        }
      });
      const ag = allGatherSchedule(shards);
      nat.validateSchedule(ag, n, length);
      const gathered = (await runNative(ag, out)).out;
      gathered.forEach((g, r) => {
        shards.forEach(([off, len], q) => sameBits(g.subarray(off, off + len), out[q]!.subarray(off, off + len), `n=${n} tower ${r} shard ${q}`));
        sameBits(g, gathered[0]!, `n=${n} replica ${r}`);
      });
    }
  });

  it('the validator refuses shards that do not tile, shards on an all-reduce, and sharded schedules that miss their goal', () => {
    const n = 3;
    const length = 48;
    const shards = shardBounds(length, n);
    const reject = (s: unknown, re: RegExp) => assert.throws(() => nat.validateSchedule(s, n, length), (e: Error) => re.test(e.message), JSON.stringify(s));
    reject({ ...reduceScatterSchedule(shards), shards: [[0, 16], [20, 12], [32, 16]] }, /must start at 16/);
    reject({ ...reduceScatterSchedule(shards), shards: [[0, 16], [16, 16]] }, /one shard per tower \(3\), got 2/);
    reject({ ...reduceScatterSchedule(shards), shards: [[0, 16], [16, 16], [32, 10]] }, /end at 42, not at the buffer's end 48/);
    reject({ ...ringSchedule({ ranks: n, length }), shards }, /only a reduce-scatter or an all-gather has shards/);
    const rs = reduceScatterSchedule(shards);
    reject({ ...rs, phases: [rs.phases[0]!.map((steps) => steps.slice(1))] }, /sums .* only; every tower needs the sum/);
    const ag = allGatherSchedule(shards);
    reject({ ...ag, phases: [ag.phases[0]!.map((steps, r) => (r === 1 ? steps.slice(1) : steps))] }, /is not tower 0's values copied verbatim/);
    reject({ ...ag, phases: [ag.phases[0]!.map((steps) => steps.map(([, peer, off, len]) => [REDUCE, peer, off, len]))] }, /copied verbatim/);
    reject({ ...rs, phases: [rs.phases[0]!.map((steps) => steps.map(([, peer, off, len]) => [COPY, peer, off, len]))] }, /sum/);
  });
});
