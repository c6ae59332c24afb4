// The sharded optimizer update (Note [Sharded update]): the same weights as the unsharded update (to rounding) with
// bit-identical replicas and 1/N of the optimizer state per tower; checkpoints merge the shards (resume exact, and
// across sharded/unsharded); the non-finite guard skips on every tower alike; unsupported combinations refused.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInProcessRuntime } from '../src/advanced.js';
import { blocks, ConfigError, NonFiniteError, type ModelSpec, type OptimizerSpec, type RunEvent, type TrainOptions } from '../src/index.js';
import { createRuntime, type Runtime } from '../src/runtime.js';
import { internalsOf } from '../src/coordinator/internals.js';
import { injectFaults } from '../src/testing/faults.js';
import { checkShardUpdate, mergeOwned, slotParam } from '../src/model/sharded-update.js';
import { towerline } from './support/cli.js';
import { barrierSchedule, shardBounds } from '../src/scheduler/shards.js';
import { sameBits } from './support/runtime.js';
import { relErr } from '../src/reference/relerr.js';
import { native } from '../src/native/addon.js';

const DIM = 24;
// 24*40 + 40 + 40*5 + 5 = 1205 parameters: shard boundaries cut the first kernel and (with 3 towers) the second.
const init = { kernelInit: { type: 'truncatedNormal' as const, stddev: 0.3 }, l2: 1e-3 };
const model: ModelSpec = { name: 'tiny', input: { shape: [DIM] }, layers: [
  { type: 'dense', units: 40, activation: 'tanh', biasInit: { type: 'constant', value: 0.1 }, ...init },
  { type: 'dense', units: 5, ...init },
] };
const PARAMS = 24 * 40 + 40 + 40 * 5 + 5;
const momentum: OptimizerSpec = { type: 'momentum', lr: 0.05, momentum: 0.9 };
const adam: OptimizerSpec = { type: 'adam', lr: 0.01 };
const data = (batchSize: number) => blocks({ batchSize, count: 240, dim: DIM, seed: 3 });

interface Outcome {
  weights: Array<Map<string, Float32Array>>;
  grads: Array<Map<string, Float32Array>>;
  /** Each tower's EMA tensors (what evaluation with the EMA reads). */
  ema: Array<Map<string, Float32Array>>;
  events: RunEvent[];
  /** Each step's global gradient norm. */
  norms: number[];
  consistent: boolean;
  optimizerNumel: number[];
  shards: Array<[number, number] | undefined>;
  /** Each tower's weights are tower 0's memory (Note [Shared weights]). */
  shared: Array<boolean | undefined>;
}

async function withRt<T>(towers: number, f: (rt: Runtime) => Promise<T>, backend: 'native' | 'reference' = 'native'): Promise<T> {
  const rt = await createInProcessRuntime({ devices: `cpu*${towers}`, backend, reduction: { algorithm: 'ring' }, collectiveTimeoutMs: 10_000, layout: { extraTowers: 'threads' } });
  try {
    return await f(rt);
  } finally {
    await rt.close();
  }
}

async function train(towers: number, o: Partial<TrainOptions> & { optimizer: OptimizerSpec }, backend: 'native' | 'reference' = 'native'): Promise<Outcome> {
  return withRt(
    towers,
    async (rt) => {
      const events: RunEvent[] = [];
      const norms: number[] = [];
      const r = rt.train({ model, data: data(30), steps: 50, seed: 4, clipNorm: 0.5, emaDecay: 0.9, ...o });
      r.events$.subscribe((e) => events.push(e));
      r.steps$.subscribe((e) => norms.push(e.gradientNorm ?? NaN));
      await r.done;
      const built = internalsOf(rt).towers.built;
      return {
        weights: await rt.readWeights(),
        grads: await rt.readGradients(),
        ema: (await internalsOf(rt).towers.all((p) => p.readState())).map((ts) => new Map(ts.filter((t) => t.name.startsWith('ema/')).map((t) => [t.name, t.data]))),
        events,
        norms,
        consistent: (await rt.checkReplicas()).consistent,
        optimizerNumel: built.map((b) => b.optimizerNumel ?? -1),
        shards: built.map((b) => b.shard),
        shared: built.map((b) => b.sharedWeights),
      };
    },
    backend,
  );
}

/** Largest |a - b| over every tensor. */
function maxDiff(a: Map<string, Float32Array>, b: Map<string, Float32Array>): number {
  let d = 0;
  for (const [name, x] of a) {
    const y = b.get(name)!;
    assert.equal(x.length, y.length, name);
    for (let i = 0; i < x.length; i++) d = Math.max(d, Math.abs(x[i]! - y[i]!));
  }
  return d;
}

function assertReplicasEqual(ws: Array<Map<string, Float32Array>>, what: string): void {
  for (const w of ws.slice(1)) for (const [name, v] of ws[0]!) assert.ok(sameBits(v, w.get(name)!), `${what}: replica of ${name} differs`);
}

const clipped = (o: Outcome) => o.norms.some((n) => n > 0.5);

describe('the sharded update equals the unsharded one (in-process native towers)', () => {
  for (const [oname, optimizer, slots] of [['momentum', momentum, 1], ['adam', adam, 2]] as const)
    for (const towers of [2, 3])
      it(`${oname}, ${towers} towers, clipping and L2 on: weights within 1e-6 after 50 steps, replicas bit-identical, 1/${towers} of the optimizer state`, async () => {
        const plain = await train(towers, { optimizer });
        const sharded = await train(towers, { optimizer, shardUpdate: true });
        assert.ok(clipped(sharded), 'the test clips (some global norm above clipNorm)');
        assert.ok(sharded.consistent, 'the replica check passes');
        assertReplicasEqual(sharded.weights, 'sharded');
        const d = maxDiff(sharded.weights[0]!, plain.weights[0]!);
        assert.ok(d < 1e-6, `weights differ by ${d}`);
        for (const [name, v] of sharded.weights[0]!) assert.ok(relErr(v, plain.weights[0]!.get(name)!) < 1e-6, `${name}: relative error ${relErr(v, plain.weights[0]!.get(name)!)}`);
        const moved = maxDiff(sharded.weights[0]!, (await train(towers, { optimizer, steps: 1, shardUpdate: true })).weights[0]!);
        assert.ok(moved > 1e-3, `training moved the weights (${moved})`);
        // The EMA (evaluation's weights) is whole and equal on every tower.
        assertReplicasEqual(sharded.ema, 'sharded EMA');
        assert.ok(sharded.ema[0]!.size === plain.ema[0]!.size && sharded.ema[0]!.size > 0 && maxDiff(sharded.ema[0]!, plain.ema[0]!) < 1e-6, 'EMA');
        // readGradients merges each tower's reduced shard: the (clipped) reduced gradient of the unsharded run.
        assert.ok(maxDiff(sharded.grads[0]!, plain.grads[0]!) < 1e-6, 'merged gradients');
        // Optimizer memory: the unsharded towers keep slots x params each, the sharded ones their shard's.
        assert.deepEqual(plain.optimizerNumel, Array(towers).fill(slots * PARAMS));
        assert.equal(sharded.optimizerNumel.reduce((a, b) => a + b, 0), slots * PARAMS);
        for (const n of sharded.optimizerNumel) assert.ok(n <= slots * (Math.ceil(PARAMS / towers) + 16), `tower keeps ${n} elements`);
        assert.deepEqual(sharded.shards, shardBounds(PARAMS, towers));
        // Native cpu towers of one process share tower 0's weights and EMA (Note [Shared weights]); unsharded ones never.
        assert.deepEqual(sharded.shared, [false, ...Array(towers - 1).fill(true)]);
        assert.deepEqual(plain.shared, Array(towers).fill(undefined));
        const started = sharded.events.find((e) => e.type === 'started');
        assert.deepEqual(started?.type === 'started' && started.optimizerBytes, sharded.optimizerNumel.map((n) => 4 * n), 'the started event reports it');
        // Two towers also share gradients and fold the reduce-scatter into the norm pass (Note [Shared gradients]).
        assert.equal(started?.type === 'started' && started.shardMemory, towers === 2 ? 'shared weights and gradients' : 'shared weights');
      });

  it('two towers without L2 (the fused pass without its L2 term): weights and gradients within 1e-6, replicas bit-identical', async () => {
    const noL2: ModelSpec = { ...model, layers: model.layers.map((l) => ({ ...l, l2: 0 })) };
    const plain = await train(2, { optimizer: adam, model: noL2, steps: 30 });
    const sharded = await train(2, { optimizer: adam, model: noL2, steps: 30, shardUpdate: true });
    assert.ok(clipped(sharded), 'the test clips');
    assert.deepEqual(sharded.shared, [false, true]);
    assertReplicasEqual(sharded.weights, 'no L2');
    assert.ok(maxDiff(sharded.weights[0]!, plain.weights[0]!) < 1e-6, 'weights');
    assert.ok(maxDiff(sharded.grads[0]!, plain.grads[0]!) < 1e-6, 'merged gradients');
  });

  it('towers on worker threads (the production port) give the same bits as in-process towers', async () => {
    const o = { model, optimizer: adam, data: data(30), steps: 20, seed: 4, clipNorm: 0.5, emaDecay: 0.9, shardUpdate: true };
    const inProcess = await train(2, o);
    const rt = await createRuntime({ devices: 'cpu*2', reduction: { algorithm: 'ring' } });
    try {
      await rt.train(o).done;
      assert.ok((await rt.checkReplicas()).consistent);
      const w = await rt.readWeights();
      for (const [name, v] of inProcess.weights[0]!) assert.ok(sameBits(v, w[1]!.get(name)!), `${name}: worker towers differ`);
    } finally {
      await rt.close();
    }
  });

  it('setReduction between sharded runs: the next sharded run trains with replicas equal', async () => {
    await withRt(3, async (rt) => {
      const o = { model, optimizer: adam, data: data(30), steps: 6, seed: 4, shardUpdate: true };
      await rt.train(o).done;
      rt.setReduction({ algorithm: 'tree' });
      await rt.train({ ...o, seed: 5 }).done;
      assert.ok((await rt.checkReplicas()).consistent);
      assertReplicasEqual(await rt.readWeights(), 'after setReduction');
    });
  });

  it('closing a sharded runtime frees its communicators and buffers', async () => {
    const count = () => {
      const st = native().stats();
      return { buffers: st.buffers, programs: st.programs, comms: st.comms };
    };
    const before = count();
    let during = before;
    await withRt(3, async (rt) => {
      await rt.train({ model, optimizer: adam, data: data(30), steps: 2, seed: 4, emaDecay: 0.9, shardUpdate: true }).done;
      during = count();
    });
    // gradient reduce-scatter, start-up broadcast, partials, and the weights' barrier (shared weights: no EMA all-gather)
    assert.ok(during.comms >= before.comms + 4, `the sharded group has its communicators (${JSON.stringify(during)})`);
    assert.deepEqual(count(), before);
  });

  it('one tower: shardUpdate is a no-op (same bits, no shard)', async () => {
    const plain = await train(1, { optimizer: adam, steps: 10 });
    const sharded = await train(1, { optimizer: adam, steps: 10, shardUpdate: true });
    assert.equal(sharded.shards[0], undefined);
    assert.equal(maxDiff(sharded.weights[0]!, plain.weights[0]!), 0);
  });

  it('on the float64 reference backend (own copies, the weight all-gather): the same weights as unsharded, replicas bit-identical', async () => {
    const plain = await train(3, { optimizer: adam, steps: 20 }, 'reference');
    const sharded = await train(3, { optimizer: adam, steps: 20, shardUpdate: true }, 'reference');
    assert.deepEqual(sharded.shared, [false, false, false], 'reference towers cannot share memory: they keep the all-gather');
    assert.ok(sharded.events.some((e) => e.type === 'started' && e.shardMemory === 'copies'));
    assertReplicasEqual(sharded.weights, 'reference sharded');
    const d = maxDiff(sharded.weights[0]!, plain.weights[0]!);
    assert.ok(d < 1e-6, `weights differ by ${d}`);
  });
});

describe('shared buffers (Note [Shared weights])', () => {
  it("a cpu device's buffer shared with another cpu device is the same memory, kept alive by the sharer", async () => {
    const nat = native();
    const a = nat.openDevice('cpu', 0), b = nat.openDevice('cpu', 1);
    try {
      const h = nat.alloc(a.id, 40, 'f32');
      assert.equal(nat.canShare(b.id, h), true);
      const s = nat.allocShared(b.id, h);
      assert.equal(nat.bufferInfo(s).device, b.id);
      assert.equal(nat.bufferInfo(s).numel, 40);
      nat.write(h, Float32Array.from({ length: 40 }, (_, i) => i + 0.5));
      assert.deepEqual([...(nat.read(s) as Float32Array)], Array.from({ length: 40 }, (_, i) => i + 0.5));
      nat.write(s, Float32Array.of(7), 3);
      assert.equal((nat.read(h) as Float32Array)[3], 7);
      nat.free(h); // the sharer keeps the memory alive
      assert.equal((nat.read(s) as Float32Array)[39], 39.5);
      nat.free(s);
    } finally {
      nat.closeDevice(a.id);
      nat.closeDevice(b.id);
    }
  });
});

describe('the barrier collective (shared memory: nothing to copy)', () => {
  it('has no phases: a barrier with a step is refused; a barrier holds every tower until all arrive', async () => {
    const nat = native();
    nat.validateSchedule(barrierSchedule(), 3, 10);
    assert.throws(() => nat.validateSchedule({ ...barrierSchedule(), phases: [[[], [[1, 0, 0, 4]]]] }, 2, 10), /a barrier has no phases/);
    const devs = [nat.openDevice('cpu', 0), nat.openDevice('cpu', 1)];
    const bufs = devs.map((d) => nat.alloc(d.id, 4, 'f32'));
    const comm = nat.createComm(bufs, barrierSchedule(), 10_000);
    try {
      nat.write(bufs[0]!, Float32Array.of(1, 2, 3, 4));
      const op = (rank: number) => [{ kernel: '@collective', inputs: [], outputs: [], attrs: { comm, rank } }];
      const programs = devs.map((d, r) => nat.compile(d.id, op(r)));
      let first = false;
      const p0 = nat.run(programs[0]!).then(() => (first = true));
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(first, false, 'tower 0 waits at the barrier for tower 1');
      await Promise.all([p0, nat.run(programs[1]!)]);
      assert.deepEqual([...(nat.read(bufs[1]!) as Float32Array)], [0, 0, 0, 0], 'a barrier copies nothing');
      for (const p of programs) nat.releaseProgram(p);
    } finally {
      nat.releaseComm(comm);
      for (const b of bufs) nat.free(b);
      for (const d of devs) nat.closeDevice(d.id);
    }
  });
});

describe('checkpoints of the sharded update', () => {
  const ckRun = async (dir: string, steps: number, resume: boolean, shardUpdate: boolean) => {
    const o = await train(2, { optimizer: adam, steps, shardUpdate, checkpoint: { dir, everySteps: 6, resume } });
    return o;
  };

  it('stopping at step 12 and resuming to 20 is bit-identical to 20 uninterrupted sharded steps (weights and EMA)', async () => {
    const full = await ckRun(await mkdtemp(join(tmpdir(), 'tl-zero-full-')), 20, false, true);
    const dir = await mkdtemp(join(tmpdir(), 'tl-zero-resume-'));
    await ckRun(dir, 12, false, true);
    const resumed = await ckRun(dir, 20, true, true);
    assert.ok(resumed.events.some((e) => e.type === 'resumed' && e.step === 12 && e.bitIdentical));
    for (const [name, w] of full.weights[0]!) assert.ok(sameBits(w, resumed.weights[0]!.get(name)!), `${name} differs after resume`);
    assertReplicasEqual(resumed.weights, 'resumed');
  });

  it('a sharded checkpoint resumes unsharded (told the bits change) and an unsharded one sharded, close to the sharded run', async () => {
    const full = await ckRun(await mkdtemp(join(tmpdir(), 'tl-zero-full2-')), 20, false, true);
    const dir = await mkdtemp(join(tmpdir(), 'tl-zero-cross-'));
    await ckRun(dir, 12, false, true);
    const resumed = await ckRun(dir, 20, true, false);
    const ev = resumed.events.find((e) => e.type === 'resumed');
    assert.ok(ev && ev.type === 'resumed' && !ev.bitIdentical && /shardUpdate/.test(ev.note + JSON.stringify(resumed.events.filter((e) => e.type === 'warning'))));
    const d = maxDiff(full.weights[0]!, resumed.weights[0]!);
    assert.ok(d < 1e-6, `weights differ by ${d}`);
    // And the other way: an unsharded checkpoint resumes sharded (each tower takes its shard of the slots).
    const dir2 = await mkdtemp(join(tmpdir(), 'tl-zero-cross2-'));
    await ckRun(dir2, 12, false, false);
    const back = await ckRun(dir2, 20, true, true);
    assert.ok(back.events.some((e) => e.type === 'resumed' && e.step === 12));
    assertReplicasEqual(back.weights, 'resumed sharded');
    const d2 = maxDiff(full.weights[0]!, back.weights[0]!);
    assert.ok(d2 < 1e-6, `weights differ by ${d2}`);
  });

  it('the merged state takes each element from the tower whose shard holds it', () => {
    const params = [{ name: 'a', offset: 0, numel: 20 }, { name: 'b', offset: 20, numel: 12 }];
    const shards = shardBounds(32, 2); // [0,16], [16,16]: 'a' is cut
    const tower = (r: number) => new Map([
      ['a', new Float32Array(20).fill(9)],
      ['optimizer/a/0', Float32Array.from({ length: 20 }, (_, i) => (i + 0 >= shards[r]![0] && i < shards[r]![0] + shards[r]![1] ? r + 1 : 0))],
      ['optimizer/b/0', Float32Array.from({ length: 12 }, (_, i) => (i + 20 >= shards[r]![0] && i + 20 < shards[r]![0] + shards[r]![1] ? -(r + 1) : 0))],
    ]);
    const m = mergeOwned([tower(0), tower(1)], params, shards, slotParam);
    assert.deepEqual([...m.get('optimizer/a/0')!], [...Array(16).fill(1), ...Array(4).fill(2)]);
    assert.deepEqual([...m.get('optimizer/b/0')!], Array(12).fill(-2));
    assert.deepEqual([...m.get('a')!], Array(20).fill(9));
  });
});

describe('the non-finite guard with the sharded update', () => {
  it("a NaN in tower 1's gradient halts naming the tower and tensor; no tower's weights changed at that step", async () => {
    const before = await train(2, { optimizer: momentum, steps: 3, shardUpdate: true });
    await withRt(2, async (rt) => {
      injectFaults(rt, (step, rank) => (step === 4 && rank === 1 ? { at: 'gradient', kind: 'nan', index: 7 } : undefined));
      const run = rt.train({ model, optimizer: momentum, data: data(30), steps: 6, seed: 4, clipNorm: 0.5, emaDecay: 0.9, shardUpdate: true });
      await assert.rejects(run.done, (e: Error) => e instanceof NonFiniteError && /step 4/.test(e.message) && /cpu:1/.test(e.message) && /dense_0\/kernel/.test(e.message) && !/cpu:0/.test(e.message));
      const w = await rt.readWeights();
      assertReplicasEqual(w, 'after the trip');
      for (const [name, v] of w[0]!) assert.ok(sameBits(v, before.weights[0]!.get(name)!), `${name} changed by the skipped step`);
    });
  });

  it("skip: a NaN received after the reduce-scatter in tower 0's shard skips the step on every tower alike", async () => {
    await withRt(2, async (rt) => {
      const events: RunEvent[] = [];
      injectFaults(rt, (step, rank) => (step === 3 && rank === 0 ? { at: 'received', kind: 'nan', index: 5 } : undefined));
      const run = rt.train({ model, optimizer: momentum, data: data(30), steps: 8, seed: 4, shardUpdate: true, guard: { nonFinite: 'skip' } });
      run.events$.subscribe((e) => events.push(e));
      await run.done;
      assert.ok(events.some((e) => e.type === 'skipped' && e.step === 3), 'step 3 was skipped');
      assert.equal(events.filter((e) => e.type === 'skipped').length, 1);
      assert.ok((await rt.checkReplicas()).consistent);
      const w = await rt.readWeights();
      assertReplicasEqual(w, 'after the skip');
      for (const v of w[0]!.values()) assert.ok(v.every(Number.isFinite));
    });
  });
});

describe('rollback with the sharded update', () => {
  it('a NaN rolls every tower back to the last checkpoint (the merged state, scattered again) and training goes on', async () => {
    await withRt(2, async (rt) => {
      const events: RunEvent[] = [];
      let sent = false; // once: the replayed step 8 is clean
      injectFaults(rt, (step, rank) => (step === 8 && rank === 1 && !sent ? ((sent = true), { at: 'gradient', kind: 'nan', index: 3 }) : undefined));
      const dir = await mkdtemp(join(tmpdir(), 'tl-zero-rollback-'));
      const run = rt.train({ model, optimizer: adam, data: data(30), steps: 12, seed: 4, shardUpdate: true, guard: { nonFinite: 'rollback' }, checkpoint: { dir, everySteps: 3 } });
      run.events$.subscribe((e) => events.push(e));
      assert.equal((await run.done).steps, 12);
      assert.ok(events.some((e) => e.type === 'rolledBack' && e.step === 6), 'rolled back to step 6');
      assert.ok((await rt.checkReplicas()).consistent);
    });
  });
});

describe('the default (Note [Sharded update]: on for two CPU towers with no reduction chosen)', () => {
  /** Whether a 4-step run on `devices` with these runtime and train options was sharded (the started event and the build agree). */
  async function sharded(devices: string, rtOpts: { reduction?: { algorithm: 'ring' | 'auto' } }, o: Partial<TrainOptions> = {}): Promise<boolean> {
    const rt = await createInProcessRuntime({ devices, collectiveTimeoutMs: 10_000, layout: { extraTowers: 'threads' }, ...rtOpts });
    try {
      const events: RunEvent[] = [];
      const r = rt.train({ model, optimizer: momentum, data: data(30), steps: 4, seed: 4, ...o });
      r.events$.subscribe((e) => events.push(e));
      await r.done;
      const started = events.find((e) => e.type === 'started');
      const built = internalsOf(rt).towers.built;
      const on = built.every((b) => b.shard !== undefined);
      assert.equal(started?.type === 'started' && started.shardMemory !== undefined, on, 'the started event says whether the update is sharded');
      if (!on) assert.ok(built.every((b) => b.shard === undefined));
      assert.ok((await rt.checkReplicas()).consistent);
      return on;
    } finally {
      await rt.close();
    }
  }

  it("two CPU towers: on unless turned off, a reduction is chosen ('auto' is no choice) or overlap is on", async () => {
    assert.equal(await sharded('cpu*2', {}), true, 'two CPU towers, nothing chosen');
    assert.equal(await sharded('cpu*2', { reduction: { algorithm: 'auto' } }), true, "reduction 'auto'");
    assert.equal(await sharded('cpu*2', {}, { shardUpdate: false }), false, 'shardUpdate: false');
    assert.equal(await sharded('cpu*2', { reduction: { algorithm: 'ring' } }), false, 'a reduction chosen');
    assert.equal(await sharded('cpu*2', {}, { overlap: true }), false, 'overlap: off, not refused');
    assert.equal(await sharded('cpu*3', {}), false, 'three towers: unmeasured, off');
    assert.equal(await sharded('cpu*1', {}), false, 'one tower');
  });

  it('setReduction during a sharded run is refused naming the sharded update and how to turn it off; the run goes on', async () => {
    const rt = await createInProcessRuntime({ devices: 'cpu*2', collectiveTimeoutMs: 10_000, layout: { extraTowers: 'threads' } });
    try {
      const r = rt.train({ model, optimizer: momentum, data: data(30), steps: 6, seed: 4 });
      let refused: unknown;
      r.steps$.subscribe((e) => {
        if (e.step !== 2) return;
        try {
          rt.setReduction({ algorithm: 'tree' });
        } catch (err) {
          refused = err;
        }
      });
      const summary = await r.done;
      assert.equal(summary.steps, 6);
      assert.ok(refused instanceof ConfigError, `refused with a ConfigError, got ${String(refused)}`);
      assert.match((refused as Error).message, /sharded update/);
      assert.match((refused as Error).message, /shardUpdate: false/);
      rt.setReduction({ algorithm: 'tree' }); // between runs: taken, and the next run is then not sharded by default
      const events: RunEvent[] = [];
      let taken = false;
      const next = rt.train({ model, optimizer: momentum, data: data(30), steps: 3, seed: 4 });
      next.events$.subscribe((e) => events.push(e));
      next.steps$.subscribe((e) => {
        if (e.step !== 1) return;
        rt.setReduction({ algorithm: 'ring' }); // an unsharded run takes it (between two steps)
        taken = true;
      });
      await next.done;
      assert.ok(events.some((e) => e.type === 'started' && e.shardMemory === undefined), 'a chosen reduction: unsharded');
      assert.ok(taken, 'setReduction during an unsharded run is taken');
    } finally {
      await rt.close();
    }
  });
});

describe('refusals', () => {
  for (const [what, extra, re] of [
    ['overlap', { overlap: true }, /overlap/],
    ["mode 'async'", { mode: 'async' as const }, /async/],
  ] as const)
    it(`shardUpdate with ${what} is refused naming both`, async () => {
      await withRt(2, async (rt) => {
        assert.throws(
          () => rt.train({ model, optimizer: momentum, data: data(30), steps: 2, shardUpdate: true, ...extra }),
          (e: Error) => e instanceof ConfigError && /shardUpdate/.test(e.message) && re.test(e.message) && /drop/.test(e.message),
        );
      });
    });

  it('several processes are refused, saying how to fix it', () => {
    assert.throws(() => checkShardUpdate({ shardUpdate: true }, 2), (e: Error) => e instanceof ConfigError && /2 processes/.test(e.message) && /--shard-update/.test(e.message));
    checkShardUpdate({ shardUpdate: false, overlap: true }, 2); // off: nothing to refuse
  });
});

describe('the CLI', () => {
  it('--shard-update trains on 2 towers; with --overlap it is refused naming both', async () => {
    const ok = await towerline(['train', '--devices', 'cpu*2', '--shard-update', '--steps', '3', '--batch-size', '32', '--optimizer', 'adam', '--lr', '0.001']);
    assert.equal(ok.code, 0, ok.err);
    assert.match(ok.out, /done: 3 steps/);
    assert.match(ok.out, /sharded update: optimizer state per tower 1\.\d\d MiB, 1\.\d\d MiB \(shared weights and gradients\)/); // Adam on 784-500-10: 2 x 1.52 MiB
    const bad = await towerline(['train', '--devices', 'cpu*2', '--shard-update', '--overlap', '--steps', '3']);
    assert.notEqual(bad.code, 0);
    assert.match(bad.err, /shardUpdate: true cannot be combined with overlap/);
  });

  it('two CPU towers are sharded by default; --no-shard-update turns it off', async () => {
    const args = ['train', '--devices', 'cpu*2', '--steps', '3', '--batch-size', '32', '--optimizer', 'adam', '--lr', '0.001'];
    const byDefault = await towerline(args);
    assert.equal(byDefault.code, 0, byDefault.err);
    assert.match(byDefault.out, /sharded update: optimizer state per tower/);
    const off = await towerline([...args, '--no-shard-update']);
    assert.equal(off.code, 0, off.err);
    assert.match(off.out, /done: 3 steps/);
    assert.doesNotMatch(off.out, /sharded update/);
  });
});
