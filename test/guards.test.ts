// Guards with injected faults: a NaN in one tower's gradient halts naming tower and tensor (or is skipped);
// a stalled tower is reported by the watchdog within its deadline, naming the tower and the phase.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createRuntime, mnist, NonFiniteError, ReplicaMismatchError, WatchdogError, type RunEvent } from '../src/runtime.js';
import { injectFaults } from '../src/testing/faults.js';
import { mnistMlp } from '../src/model/spec.js';
import { native } from '../src/native/addon.js';

const model = mnistMlp(32);
const optimizer = { type: 'sgd' as const, lr: 0.05 };
// dense_0/kernel is 784x32 = 25088 elements, then dense_0/bias (32): element 25090 lies in the bias.
const IN_BIAS = 784 * 32 + 2;
// dense_0/kernel[0][3]: the weight of MNIST's always-black corner pixel to hidden unit 3. It gets no data gradient
// (only the tiny L2 decay), so a one-ulp flip of it is never rounded away by the update.
const CORNER_WEIGHT = 3;

describe('non-finite guard', () => {
  it("halt (default): a NaN in tower 2's gradient stops the run naming step, tower and tensor", async () => {
    const rt = await createRuntime({ devices: 'cpu*3', layout: { extraTowers: 'threads' } });
    try {
      injectFaults(rt, (step, rank) => (step === 4 && rank === 2 ? { at: 'gradient', kind: 'nan', index: IN_BIAS } : undefined));
      const run = rt.train({ model, optimizer, data: mnist({ batchSize: 96 }), steps: 10, seed: 1 });
      let failed: Error | undefined;
      let completed = false;
      run.events$.subscribe({ next: (e) => e.type === 'failed' && (failed = e.error), complete: () => (completed = true) });
      await assert.rejects(run.done, (e: Error) => e instanceof NonFiniteError && /step 4/.test(e.message) && /cpu:2/.test(e.message) && /dense_0\/bias/.test(e.message) && !/cpu:0|cpu:1/.test(e.message));
      await new Promise((r) => setTimeout(r, 10));
      assert.ok(failed instanceof NonFiniteError, "the 'failed' event carries the error");
      assert.ok(completed, 'events$ completes after the failure');
      // The update was not applied: weights are finite and identical across towers.
      const w = await rt.readWeights();
      for (const [name, v] of w[0]!) {
        assert.ok(v.every(Number.isFinite), `${name} has non-finite weights`);
        assert.deepEqual(v, w[2]!.get(name));
      }
    } finally {
      await rt.close();
    }
  });

  it('skip: the bad step is skipped on every tower and training goes on', async () => {
    const rt = await createRuntime({ devices: 'cpu*2' });
    try {
      const events: RunEvent[] = [];
      injectFaults(rt, (step, rank) => (step === 3 && rank === 1 ? { at: 'gradient', kind: 'nan', index: 5 } : undefined));
      const run = rt.train({ model, optimizer, data: mnist({ batchSize: 64 }), steps: 8, seed: 1, guard: { nonFinite: 'skip' } });
      run.events$.subscribe((e) => events.push(e));
      const s = await run.done;
      assert.equal(s.steps, 8);
      assert.ok(Number.isFinite(s.finalLoss));
      const skipped = events.filter((e) => e.type === 'skipped');
      assert.equal(skipped.length, 1);
      assert.match((skipped[0] as { reason: string }).reason, /cpu:1.*dense_0\/kernel/);
      const w = await rt.readWeights();
      for (const [name, v] of w[0]!) assert.ok(v.every(Number.isFinite) && Buffer.compare(Buffer.from(v.buffer), Buffer.from(w[1]!.get(name)!.buffer)) === 0, name);
    } finally {
      await rt.close();
    }
  });
});

describe('non-finite guard: rollback', () => {
  it('restores the last checkpoint, halves the learning rate and goes on; without a checkpoint it halts', async () => {
    const { mkdtemp } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const dir = await mkdtemp(join(tmpdir(), 'tl-rollback-'));
    const rt = await createRuntime({ devices: 'cpu*2' });
    try {
      const events: RunEvent[] = [];
      let nanSent = false;
      injectFaults(rt, (step, rank) => (step === 6 && rank === 0 && !nanSent ? ((nanSent = true), { at: 'gradient', kind: 'nan', index: 3 }) : undefined));
      const run = rt.train({ model, optimizer, data: mnist({ batchSize: 64 }), steps: 12, seed: 1, guard: { nonFinite: 'rollback' }, checkpoint: { dir, everySteps: 4 } });
      run.events$.subscribe((e) => events.push(e));
      const lrs: number[] = [];
      run.steps$.subscribe((e) => lrs.push(e.learningRate));
      const s = await run.done;
      assert.equal(s.steps, 12);
      const rb = events.find((e) => e.type === 'rolledBack') as { step: number; path: string; lrScale: number } | undefined;
      assert.ok(rb, 'a rolledBack event');
      assert.equal(rb.lrScale, 0.5);
      assert.match(rb.path, /ckpt-000000004/);
      assert.equal(lrs[0], 0.05);
      assert.equal(lrs[lrs.length - 1], 0.025);
      const w = await rt.readWeights();
      for (const [name, v] of w[0]!) assert.ok(v.every(Number.isFinite) && Buffer.compare(Buffer.from(v.buffer), Buffer.from(w[1]!.get(name)!.buffer)) === 0, name);
      injectFaults(rt, (step, rank) => (step === 2 && rank === 1 ? { at: 'gradient', kind: 'nan', index: 3 } : undefined));
      const run2 = rt.train({ model, optimizer, data: mnist({ batchSize: 64 }), steps: 5, seed: 1, guard: { nonFinite: 'rollback' } });
      await assert.rejects(run2.done, /no checkpoint to roll back to/);
    } finally {
      await rt.close();
    }
  });
});

describe('watchdog', () => {
  it('a tower stalled in backward is reported within its deadline, naming the tower and the phase; close returns', async () => {
    const rt = await createRuntime({ devices: 'cpu*3', layout: { extraTowers: 'threads' } });
    injectFaults(rt, (step, rank) => (step === 3 && rank === 1 ? { at: 'backward', kind: 'stall', ms: 4000 } : undefined));
    const run = rt.train({ model, optimizer, data: mnist({ batchSize: 96 }), steps: 10, seed: 1, guard: { stepTimeoutMs: 1500 } });
    let stepStart = 0;
    run.steps$.subscribe((e) => { if (e.step === 2) stepStart = performance.now(); });
    await assert.rejects(run.done, (e: Error) => e instanceof WatchdogError && e.devices.join() === 'cpu:1' && e.phase === 'backward' && /step 3/.test(e.message)).catch(async (e: unknown) => {
      await rt.close(); // leave no towers behind for the next test
      throw e;
    });
    const dt = performance.now() - stepStart;
    assert.ok(dt < 1500 + 2000, `reported after ${dt.toFixed(0)} ms`);
    const t0 = performance.now();
    await rt.close();
    assert.ok(performance.now() - t0 < 15000);
    assert.equal(native().stats().comms, 0);
  });
});

describe('replica consistency check', () => {
  for (const [devices, algorithm, rank] of [['cpu*2', 'ring', 1], ['cpu*3', 'naive', 2]] as const) {
    it(`a single bit flipped in tower ${rank}'s weights (${algorithm}, ${devices}) is detected within K=5 steps, naming the tower`, async () => {
      const rt = await createRuntime({ devices, reduction: { algorithm }, layout: { extraTowers: 'threads' } });
      try {
        // The lowest mantissa bit of one weight of one replica, just before step 7's update: silent corruption.
        injectFaults(rt, (step, r) => (step === 7 && r === rank ? { at: 'update', kind: 'bitflip', index: CORNER_WEIGHT } : undefined));
        const run = rt.train({ model, optimizer, data: mnist({ batchSize: 96 }), steps: 30, seed: 2, guard: { replicaCheckEvery: 5 } });
        const events: RunEvent[] = [];
        run.events$.subscribe((e) => events.push(e));
        await assert.rejects(run.done, (e: Error) => e instanceof ReplicaMismatchError && /by step 10/.test(e.message) && new RegExp(`cpu:${rank} differs from tower 0`).test(e.message) && /in 'dense_0\/kernel'/.test(e.message));
        const checks = events.filter((e) => e.type === 'replicas') as Array<{ step: number; consistent: boolean }>;
        assert.deepEqual(checks.map((c) => [c.step, c.consistent]), [[5, true], [10, false]], 'step 5 was consistent; step 10 caught the flip of step 7');
      } finally {
        await rt.close();
      }
    });
  }

  it('rebroadcast policy: tower 0 is copied to all, training goes on, and replicas end bit-identical', async () => {
    const rt = await createRuntime({ devices: 'cpu*2' });
    try {
      injectFaults(rt, (step, rank) => (step === 2 && rank === 1 ? { at: 'update', kind: 'bitflip', index: CORNER_WEIGHT } : undefined));
      // shardUpdate false: two CPU towers are sharded by default, and sharded CPU towers share one weight arena
      // (Note [Shared weights]), so there would be no second copy for the flip to make differ.
      const run = rt.train({ model, optimizer, data: mnist({ batchSize: 64 }), steps: 12, seed: 2, shardUpdate: false, guard: { replicaCheckEvery: 4, replicaPolicy: 'rebroadcast' } });
      const events: RunEvent[] = [];
      run.events$.subscribe((e) => events.push(e));
      await run.done;
      assert.deepEqual(events.filter((e) => e.type === 'replicas').map((e) => (e as { consistent: boolean }).consistent), [false, true, true], 'the flip of step 2 was caught at step 4 and repaired');
      assert.equal((await rt.checkReplicas()).consistent, true);
    } finally {
      await rt.close();
    }
  });
});
