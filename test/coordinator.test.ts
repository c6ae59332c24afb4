// The coordinator on in-process tower ports: no worker threads. Most cases run the towers on the float64 reference
// backend joined by the in-process collective (the same validated schedules); resume exactness runs in-process
// native towers (float32, as checkpoints are). The worker port is covered by runtime, guards and cli-e2e tests.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isMainThread } from 'node:worker_threads';
import { createInProcessRuntime } from '../src/advanced.js';
import { blocks, ConfigError, NonFiniteError, ReplicaMismatchError, WatchdogError, type ModelSpec, type RunEvent, type StepEvent } from '../src/index.js';
import type { Runtime } from '../src/runtime.js';
import { internalsOf } from '../src/coordinator/internals.js';
import { InProcessTowerPort } from '../src/tower-port/in-process-port.js';
import { SpeedShares } from '../src/coordinator/speed.js';
import { shardSizes } from '../src/coordinator/shard.js';
import { settingsDiff } from '../src/coordinator/checkpoints.js';
import { RunDelivery } from '../src/coordinator/run-delivery.js';
import { ReplaySubject, Subject, share } from 'rxjs';
import { injectFaults } from '../src/testing/faults.js';
import { relErr } from '../src/reference/relerr.js';
import type { StepReply } from '../src/tower-port/protocol.js';
import { sameBits } from './support/runtime.js';

const DIM = 24;
const model: ModelSpec = {
  name: 'tiny',
  input: { shape: [DIM] },
  layers: [
    { type: 'dense', units: 12, activation: 'tanh', kernelInit: { type: 'truncatedNormal', stddev: 0.3 }, biasInit: { type: 'constant', value: 0.1 }, l2: 1e-3 },
    { type: 'dense', units: 5, kernelInit: { type: 'truncatedNormal', stddev: 0.3 } },
  ],
};
const optimizer = { type: 'momentum' as const, lr: 0.05, momentum: 0.9 };
const data = (batchSize: number) => blocks({ batchSize, count: 240, dim: DIM, seed: 3 });

async function withRef<T>(towers: number, f: (rt: Runtime) => Promise<T>, opts: { algorithm?: 'ring' | 'tree' | 'naive'; shares?: 'equal' | 'speed'; stepMs?: number } = {}): Promise<T> {
  const rt = await createInProcessRuntime({ devices: `cpu*${towers}`, backend: 'reference', reduction: { algorithm: opts.algorithm ?? 'ring' }, ...(opts.shares ? { shares: opts.shares } : {}), collectiveTimeoutMs: 5000 });
  try {
    assert.ok(isMainThread && internalsOf(rt).towers.ports.every((p) => p instanceof InProcessTowerPort), 'every tower is in this thread');
    return await f(rt);
  } finally {
    await rt.close();
  }
}

/** Trains `steps` steps at `batch` and returns tower 0's gradients of the last step and every tower's weights. */
async function train(rt: Runtime, batch: number, steps: number, extra: Record<string, unknown> = {}) {
  await rt.train({ model, optimizer, data: data(batch), steps, seed: 9, ...extra }).done;
  return { grads: (await rt.readGradients())[0]!, weights: await rt.readWeights() };
}

describe('coordinator on in-process reference towers: N towers equal one device', () => {
  let single: Awaited<ReturnType<typeof train>> | undefined;
  // Any split: 30 over 4 is 8/8/7/7, over 7 is 5/5/4/4/4/4/4 (Note [Shard weighting]).
  for (const [n, algorithm] of [[2, 'ring'], [4, 'tree'], [7, 'naive'], [3, 'ring']] as const) {
    it(`${n} towers (${algorithm}), batch 30: the reduced gradient equals the whole-batch gradient, and the weights after 4 steps match`, async () => {
      single ??= await withRef(1, (rt) => train(rt, 30, 4));
      const multi = await withRef(n, (rt) => train(rt, 30, 4), { algorithm });
      for (const [name, g] of single.grads) assert.ok(relErr(multi.grads.get(name)!, g) < 1e-6, `${name}: gradient rel err ${relErr(multi.grads.get(name)!, g)}`);
      for (const [name, w] of single.weights[0]!) assert.ok(relErr(multi.weights[0]!.get(name)!, w) < 1e-6, `${name}: weights rel err`);
      for (let r = 1; r < n; r++) for (const [name, w] of multi.weights[0]!) assert.ok(sameBits(w, multi.weights[r]!.get(name)!), `${name}: tower ${r} differs from tower 0`);
    });
  }

  it('streams report shard sizes that sum to the batch over any tower count, and the runtime names the towers', async () => {
    await withRef(4, async (rt) => {
      assert.deepEqual(rt.devices, ['ref:0', 'ref:1', 'ref:2', 'ref:3']);
      const run = rt.train({ model, optimizer, data: data(30), steps: 3, seed: 1 });
      const seen: StepEvent[] = [];
      run.steps$.subscribe((e) => seen.push(e));
      await run.done;
      await new Promise((r) => setTimeout(r, 10));
      assert.deepEqual(seen.map((e) => e.shardSizes), [[8, 8, 7, 7], [8, 8, 7, 7], [8, 8, 7, 7]]);
      assert.ok(seen.every((e) => e.towers.length === 4 && Number.isFinite(e.loss)));
    });
  });
});

describe('speed shares', () => {
  it('split weights follow measured ms per example; sizes stay exact and >= 1', () => {
    const s = new SpeedShares(3);
    assert.equal(s.weights(), undefined, 'equal shares until every tower is measured');
    const reply = (forward: number): StepReply => ({ loss: 0, regLoss: 0, gradNorm: 0, skipped: false, reduceWaitMs: 0, timings: { startMs: 0, input: 0, forward, backward: forward, reduce: 0, update: 0, total: 0 } });
    s.record([10, 10, 10], [reply(10), reply(20), reply(40)]);
    const w = s.weights()!;
    assert.deepEqual(w.map((x) => x / w[0]!), [1, 0.5, 0.25]);
    const sizes = shardSizes(100, 3, w);
    assert.equal(sizes.reduce((a, b) => a + b, 0), 100);
    assert.ok(sizes[0]! > sizes[1]! && sizes[1]! > sizes[2]! && sizes[2]! >= 1, `sizes ${sizes}`);
  });

  it("'speed' shares on 3 towers: the first step is split equally, every split sums to the batch, and the result equals one device", async () => {
    const single = await withRef(1, (rt) => train(rt, 30, 5));
    const sizes: number[][] = [];
    const multi = await withRef(3, async (rt) => {
      const run = rt.train({ model, optimizer, data: data(30), steps: 5, seed: 9 });
      run.steps$.subscribe((e) => sizes.push(e.shardSizes));
      await run.done;
      return { weights: await rt.readWeights() };
    }, { shares: 'speed' });
    await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(sizes[0], [10, 10, 10]);
    assert.ok(sizes.every((s) => s.length === 3 && s.reduce((a, b) => a + b, 0) === 30 && s.every((x) => x >= 1)));
    for (const [name, w] of single.weights[0]!) assert.ok(relErr(multi.weights[0]!.get(name)!, w) < 1e-6, `${name}: rel err`);
  });
});

describe('replica policy', () => {
  /** Corrupts one weight of tower `rank` in the gap after step `after` (through the between-steps queue). */
  function corruptAfter(rt: Runtime, run: { steps$: { subscribe(f: (e: StepEvent) => void): unknown } }, after: number, rank: number): void {
    const towers = internalsOf(rt).towers;
    run.steps$.subscribe((e) => {
      if (e.step !== after) return;
      void towers.betweenSteps(async () => {
        const state = await towers.ports[rank]!.readState();
        const w = state.find((t) => t.name === 'dense_1/bias')!.data;
        w[2] = w[2]! + 0.25;
        await towers.ports[rank]!.writeState(state.map((t) => [t.name, t.data]));
      });
    });
  }

  it("halt: a replica that drifted is caught at the next check, naming the tower and the tensor", async () => {
    await withRef(3, async (rt) => {
      const run = rt.train({ model, optimizer, data: data(30), steps: 12, seed: 2, guard: { replicaCheckEvery: 4 } });
      corruptAfter(rt, run, 5, 2);
      const events: RunEvent[] = [];
      run.events$.subscribe((e) => events.push(e));
      await assert.rejects(run.done, (e: Error) => e instanceof ReplicaMismatchError && e.code === 'TL_REPLICA_MISMATCH' && /by step 8/.test(e.message) && /ref:2 differs from tower 0/.test(e.message) && /in 'dense_[01]\/(kernel|bias)'/.test(e.message));
      await new Promise((r) => setTimeout(r, 10));
      assert.deepEqual(events.filter((e) => e.type === 'replicas').map((e) => (e as { consistent: boolean }).consistent), [true, false]);
      assert.equal(events.at(-1)?.type, 'failed');
    });
  });

  it('rebroadcast: tower 0 is copied to all and training goes on with identical replicas', async () => {
    await withRef(3, async (rt) => {
      const run = rt.train({ model, optimizer, data: data(30), steps: 12, seed: 2, guard: { replicaCheckEvery: 4, replicaPolicy: 'rebroadcast' } });
      corruptAfter(rt, run, 5, 1);
      const events: RunEvent[] = [];
      run.events$.subscribe((e) => events.push(e));
      assert.equal((await run.done).steps, 12);
      await new Promise((r) => setTimeout(r, 10));
      assert.deepEqual(events.filter((e) => e.type === 'replicas').map((e) => (e as { consistent: boolean }).consistent), [true, false, true]);
      assert.equal((await rt.checkReplicas()).consistent, true);
    });
  });
});

describe('replica check against a fault armed in the production step program', () => {
  it("a bit flipped in one replica's weights is caught at the next check, and 'rebroadcast' repairs it", async () => {
    await withRef(3, async (rt) => {
      // A weight whose value stays inside its binade, so the one-ulp flip cannot round away in the update.
      injectFaults(rt, (step, rank) => (step === 3 && rank === 1 ? { at: 'update', kind: 'bitflip', index: 7 } : undefined));
      const run = rt.train({ model, optimizer, data: data(30), steps: 9, seed: 2, guard: { replicaCheckEvery: 3, replicaPolicy: 'rebroadcast' } });
      const events: RunEvent[] = [];
      run.events$.subscribe((e) => events.push(e));
      await run.done;
      await new Promise((r) => setTimeout(r, 10));
      const checks = events.filter((e) => e.type === 'replicas') as Array<{ consistent: boolean; detail: string }>;
      assert.deepEqual(checks.map((c) => c.consistent), [false, true, true]);
      assert.match(checks[0]!.detail, /ref:1 differs from tower 0 \(ref:0\) in 'dense_0\/kernel'/);
    });
  });
});

describe('non-finite policy (faults armed in the production step program)', () => {
  it('halt: a NaN in one tower\'s gradient stops the run naming step, tower and tensor', async () => {
    await withRef(3, async (rt) => {
      injectFaults(rt, (step, rank) => (step === 3 && rank === 1 ? { at: 'gradient', kind: 'nan', index: DIM * 12 + 4 } : undefined));
      const run = rt.train({ model, optimizer, data: data(30), steps: 6, seed: 1 });
      await assert.rejects(run.done, (e: Error) => e instanceof NonFiniteError && e.code === 'TL_NON_FINITE' && /step 3/.test(e.message) && /ref:1: gradient of 'dense_0\/bias'/.test(e.message) && !/ref:0|ref:2/.test(e.message));
      const w = await rt.readWeights();
      for (const [name, v] of w[0]!) assert.ok(v.every(Number.isFinite) && sameBits(v, w[1]!.get(name)!), `${name}: the update was not applied anywhere`);
    });
  });

  it("halt on a lone tower names the tensor, with an L2 term and without (Note [Lone tower's local norms])", async () => {
    for (const [index, tensor] of [[DIM * 12 + 4, 'dense_0/bias'], [5, 'dense_0/kernel']] as const) {
      await withRef(1, async (rt) => {
        injectFaults(rt, (step) => (step === 2 ? { at: 'gradient', kind: 'nan', index } : undefined));
        const run = rt.train({ model, optimizer, data: data(30), steps: 4, seed: 1 });
        await assert.rejects(run.done, (e: Error) => e instanceof NonFiniteError && /step 2/.test(e.message) && e.message.includes(`ref:0: gradient of '${tensor}'`));
      });
    }
  });

  it('skip: the step is skipped on every tower alike and training goes on', async () => {
    await withRef(2, async (rt) => {
      injectFaults(rt, (step, rank) => (step === 2 && rank === 0 ? { at: 'gradient', kind: 'nan', index: 0 } : undefined));
      const run = rt.train({ model, optimizer, data: data(30), steps: 5, seed: 1, guard: { nonFinite: 'skip' } });
      const events: RunEvent[] = [];
      run.events$.subscribe((e) => events.push(e));
      const s = await run.done;
      await new Promise((r) => setTimeout(r, 10));
      assert.equal(s.steps, 5);
      assert.deepEqual(events.filter((e) => e.type === 'skipped').map((e) => (e as { step: number }).step), [2]);
      assert.equal((await rt.checkReplicas()).consistent, true);
    });
  });

  it('rollback: restores the last checkpoint with half the learning rate; without one it halts', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tl-coord-rollback-'));
    await withRef(2, async (rt) => {
      let armed = true;
      injectFaults(rt, (step, rank) => (step === 5 && rank === 1 && armed ? ((armed = false), { at: 'gradient', kind: 'nan', index: 1 }) : undefined));
      const run = rt.train({ model, optimizer, data: data(30), steps: 8, seed: 1, guard: { nonFinite: 'rollback' }, checkpoint: { dir, everySteps: 3 } });
      const events: RunEvent[] = [];
      const lrs: number[] = [];
      run.events$.subscribe((e) => events.push(e));
      run.steps$.subscribe((e) => lrs.push(e.learningRate));
      assert.equal((await run.done).steps, 8);
      await new Promise((r) => setTimeout(r, 10));
      const rb = events.find((e) => e.type === 'rolledBack') as { step: number; path: string; lrScale: number };
      assert.equal(rb.step, 3);
      assert.match(rb.path, /ckpt-000000003/);
      assert.equal(rb.lrScale, 0.5);
      assert.equal(lrs.at(-1), 0.025);
      injectFaults(rt, (step) => (step === 1 ? { at: 'gradient', kind: 'nan', index: 1 } : undefined));
      await assert.rejects(rt.train({ model, optimizer, data: data(30), steps: 3, seed: 1, guard: { nonFinite: 'rollback' } }).done, /no checkpoint to roll back to/);
    });
  });

  it('rollback: a non-finite value that comes back after every rollback halts after guard.maxRollbacks, naming it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tl-coord-rollback-max-'));
    await withRef(2, async (rt) => {
      injectFaults(rt, (step, rank) => (step === 5 && rank === 1 ? { at: 'gradient', kind: 'nan', index: 1 } : undefined));
      const run = rt.train({ model, optimizer, data: data(30), steps: 8, seed: 1, guard: { nonFinite: 'rollback', maxRollbacks: 2 }, checkpoint: { dir, everySteps: 3 } });
      const events: RunEvent[] = [];
      run.events$.subscribe((e) => events.push(e));
      await assert.rejects(run.done, (e: Error) => e instanceof NonFiniteError && /rolled back to .*ckpt-000000003.* 2 time\(s\) in a row/.test(e.message) && /guard\.maxRollbacks/.test(e.message) && /cpu|tower/.test(e.message));
      await new Promise((r) => setTimeout(r, 10));
      assert.deepEqual(events.filter((e) => e.type === 'rolledBack').map((e) => (e as { lrScale: number }).lrScale), [0.5, 0.25]);
    });
  });

  it('watchdog: a stalled tower is named with its phase; the others were waiting in the all-reduce', async () => {
    await withRef(3, async (rt) => {
      injectFaults(rt, (step, rank) => (step === 2 && rank === 2 ? { at: 'backward', kind: 'stall', ms: 1500 } : undefined));
      const run = rt.train({ model, optimizer, data: data(30), steps: 4, seed: 1, guard: { stepTimeoutMs: 300 } });
      await assert.rejects(run.done, (e: Error) => e instanceof WatchdogError && e.devices.join() === 'ref:2' && e.phase === 'backward' && /step 2/.test(e.message));
    });
  });
});

describe('resume (in-process native towers, float32 like the checkpoints)', () => {
  const run = async (dir: string, steps: number, resume: boolean, lr = 0.05) => {
    const rt = await createInProcessRuntime({ devices: 'cpu*2', backend: 'native' });
    try {
      assert.ok(internalsOf(rt).towers.ports.every((p) => p instanceof InProcessTowerPort));
      const events: RunEvent[] = [];
      const r = rt.train({ model, optimizer: { ...optimizer, lr }, emaDecay: 0.9, data: data(30), steps, seed: 4, checkpoint: { dir, everySteps: 4, resume } });
      r.events$.subscribe((e) => events.push(e));
      await r.done;
      return { weights: await rt.readWeights(), events };
    } finally {
      await rt.close();
    }
  };

  it('stopping at step 8 and resuming to 14 ends bit-identical to 14 uninterrupted steps', async () => {
    const full = await run(await mkdtemp(join(tmpdir(), 'tl-coord-full-')), 14, false);
    const dir = await mkdtemp(join(tmpdir(), 'tl-coord-resume-'));
    await run(dir, 8, false);
    const resumed = await run(dir, 14, true);
    assert.ok(resumed.events.some((e) => e.type === 'resumed' && e.step === 8));
    for (const [name, w] of full.weights[0]!) assert.ok(sameBits(w, resumed.weights[0]!.get(name)!), `${name} differs after resume`);
  });

  it('resuming with other settings names each differing field with both values', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tl-coord-mismatch-'));
    await run(dir, 4, false);
    await assert.rejects(run(dir, 8, true, 0.1), (e: Error) => e instanceof ConfigError && /optimizer\.lr: saved 0\.05, given 0\.1/.test(e.message) && !/model/.test(e.message.split('\n').slice(1).join('\n')));
  });

  it('settingsDiff lists every differing leaf by path', () => {
    assert.deepEqual(settingsDiff({ a: 1, b: { c: [1, 2] }, d: 'x' }, { a: 1, b: { c: [1, 3] }, e: true }), ['b.c[1]: saved 2, given 3', 'd: saved "x", given (not set)', 'e: saved (not set), given true']);
  });
});

describe('run stream delivery (Note [Run stream delivery])', () => {
  it('delivers later, never inside next(), in emission order across streams; what a delivery emits comes after', async () => {
    const d = new RunDelivery();
    const steps = new ReplaySubject<string>(1);
    const events = new Subject<string>();
    const steps$ = steps.pipe(d.deliver(), share());
    const events$ = events.pipe(d.deliver(), share());
    const seen: string[] = [];
    steps$.subscribe({ next: (v) => seen.push(`s:${v}`), complete: () => seen.push('s:done') });
    events$.subscribe((v) => {
      seen.push(`e:${v}`);
      if (v === 'x') steps.next('c'); // emitted during a delivery: delivered after the values already queued
    });
    steps.next('a');
    events.next('x');
    steps.next('b');
    assert.deepEqual(seen, [], 'nothing is delivered inside next()');
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(seen, ['s:a', 'e:x', 's:b', 's:c']);
    steps.complete();
    assert.deepEqual(seen.length, 4, 'nor inside complete()');
    await new Promise((r) => setImmediate(r));
    assert.equal(seen[4], 's:done');
    // A late subscriber to a finished stream gets the latest value, then completion, also later.
    const late: string[] = [];
    steps$.subscribe({ next: (v) => late.push(v), complete: () => late.push('done') });
    assert.deepEqual(late, []);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(late, ['c', 'done']);
  });
});
