// Many towers: equivalence with one device, bit-identical replicas, reproducibility, MNIST on 3 towers, and faults.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createRuntime, mnist, TowerError, type StepEvent } from '../src/runtime.js';
import { mnistMlp } from '../src/model/spec.js';
import { relErr } from '../src/reference/relerr.js';
import { native } from '../src/native/addon.js';
import { sameBits, withRuntime } from './support/runtime.js';
import { injectFaults, killTower } from '../src/testing/faults.js';

const model = mnistMlp(64);
const optimizer = { type: 'momentum' as const, lr: 0.05, momentum: 0.9 };

describe('equivalence with one device (global batch 128)', () => {
  let single: Map<string, Float32Array> | undefined;
  const oneStep = (devices: string, algorithm: 'ring' | 'tree' | 'naive') =>
    withRuntime(devices, algorithm, async (rt) => {
      await rt.train({ model, optimizer, data: mnist({ batchSize: 128 }), steps: 1, seed: 11 }).done;
      return (await rt.readGradients())[0]!;
    });

  for (const algorithm of ['ring', 'tree', 'naive'] as const)
    for (const n of [2, 3, 4]) {
      it(`${n} towers, ${algorithm}: the reduced gradient equals the whole-batch gradient (rel err < 1e-5)`, async () => {
        single ??= await oneStep('cpu:0', 'ring');
        const multi = await oneStep(`cpu*${n}`, algorithm);
        for (const [name, g] of single) {
          const err = relErr(multi.get(name)!, g);
          assert.ok(err < 1e-5, `${name}: rel err ${err}`);
        }
      });
    }

  for (const algorithm of ['ring', 'tree', 'naive'] as const)
    it(`after 50 steps on 3 towers (${algorithm}) all replicas are bit-identical, and a second run with the same seed is too`, async () => {
      const run = () =>
        withRuntime('cpu*3', algorithm, async (rt) => {
          await rt.train({ model, optimizer, data: mnist({ batchSize: 128 }), steps: 50, seed: 5 }).done;
          return rt.readWeights();
        });
      const a = await run();
      for (const [name, w] of a[0]!) for (let r = 1; r < 3; r++) assert.ok(sameBits(w, a[r]!.get(name)!), `${name} differs between tower 0 and ${r}`);
      const b = await run();
      for (const [name, w] of a[0]!) assert.ok(sameBits(w, b[0]!.get(name)!), `${name} differs between two runs with the same seed`);
    });
});

describe('step streams', () => {
  it('several and late subscribers see steps; shard sizes and per-tower timings are reported; 128 over 3 is 43/43/42', async () => {
    await withRuntime('cpu*3', 'ring', async (rt) => {
      const run = rt.train({ model, optimizer, data: mnist({ batchSize: 128 }), steps: 20, seed: 1 });
      const a: StepEvent[] = [];
      const b: StepEvent[] = [];
      run.steps$.subscribe((e) => a.push(e));
      const sub = run.steps$.subscribe((e) => {
        b.push(e);
        if (b.length === 3) sub.unsubscribe();
      });
      let slowSeen = 0;
      run.steps$.subscribe(() => {
        // A slow subscriber: blocks 2 ms per event; training must still finish all steps.
        const until = performance.now() + 2;
        while (performance.now() < until);
        slowSeen++;
      });
      const summary = await run.done;
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(summary.steps, 20);
      assert.equal(a.length, 20);
      assert.equal(b.length, 3);
      assert.equal(slowSeen, 20);
      const e = a[19]!;
      assert.deepEqual(e.shardSizes, [43, 43, 42]);
      assert.equal(e.towers.length, 3);
      assert.ok(e.towers.every((t) => t.forward > 0 && t.backward > 0 && t.reduce >= 0 && t.update > 0 && t.idle >= 0));
      assert.ok(Number.isFinite(e.loss) && e.examplesPerSec > 0 && e.learningRate === 0.05);
      let late = 0;
      run.steps$.subscribe({ next: () => late++, complete: () => undefined });
      await new Promise((r) => setTimeout(r, 10));
      assert.ok(late <= 1, 'a late subscriber gets at most the last event of a finished run');
    });
  });

  it('changing the reduction between runs works; a bad strategy is rejected and changes nothing', async () => {
    await withRuntime('cpu*2', 'ring', async (rt) => {
      await rt.train({ model, optimizer, data: mnist({ batchSize: 64 }), steps: 2 }).done;
      rt.setReduction({ algorithm: 'tree' });
      assert.equal(rt.currentSchedule().name, 'tree');
      assert.throws(() => rt.setReduction({ custom: { name: 'bad', plan: () => ({ name: 'bad', phases: [] }) } }), /sums towers/);
      assert.equal(rt.currentSchedule().name, 'tree');
      await rt.train({ model, optimizer, data: mnist({ batchSize: 64 }), steps: 2 }).done;
    });
  });
});

describe('changing the reduction mid-run, and shares that follow tower speed', () => {
  it('a subscriber switches ring -> tree -> naive between steps; training goes on and replicas stay bit-identical', async () => {
    await withRuntime('cpu*3', 'ring', async (rt) => {
      const run = rt.train({ model, optimizer, data: mnist({ batchSize: 96 }), steps: 30, seed: 3 });
      run.steps$.subscribe((e) => {
        if (e.step === 10) rt.setReduction({ algorithm: 'tree' });
        if (e.step === 20) rt.setReduction({ algorithm: 'naive' });
      });
      const s = await run.done;
      assert.equal(s.steps, 30);
      assert.equal(rt.currentSchedule().name, 'naive');
      assert.equal((await rt.checkReplicas()).consistent, true);
    });
  });

  it("shares: 'speed' splits by measured speed, stays exact and keeps replicas identical", async () => {
    const rt = await createRuntime({ devices: 'cpu*2', shares: 'speed' });
    try {
      const sizes: number[][] = [];
      const run = rt.train({ model, optimizer, data: mnist({ batchSize: 128 }), steps: 25, seed: 3 });
      run.steps$.subscribe((e) => sizes.push(e.shardSizes));
      await run.done;
      assert.ok(sizes.every((s) => s.length === 2 && s[0]! + s[1]! === 128 && s[0]! >= 1 && s[1]! >= 1));
      assert.deepEqual(sizes[0], [64, 64], 'the first step has no measurement yet: equal shares');
      assert.equal((await rt.checkReplicas()).consistent, true);
    } finally {
      await rt.close();
    }
  });
});

describe('MNIST on 3 CPU towers', () => {
  it('reaches >= 98.0% test accuracy (10 epochs, batch 128)', async () => {
    await withRuntime('cpu*3', 'ring', async (rt) => {
      const run = rt.train({
        model: mnistMlp(),
        optimizer: { type: 'momentum', lr: { type: 'exponential', lr: 0.1, decayRate: 0.95, decaySteps: 468, staircase: true }, momentum: 0.9 },
        emaDecay: 0.999,
        data: mnist({ batchSize: 128 }),
        epochs: 10,
        seed: 4,
        evaluate: true,
      });
      const s = await run.done;
      console.log(`# 3 towers: ${s.steps} steps, final loss ${s.finalLoss.toFixed(4)}, test accuracy ${s.evaluation?.accuracy}`);
      assert.ok(s.evaluation && s.evaluation.accuracy >= 0.98, `accuracy ${s.evaluation?.accuracy}`);
    });
  });
});

describe('faults', () => {
  it('a tower whose kernel throws makes the step stream error with the device and the cause, fast; close returns', async () => {
    const rt = await createRuntime({ devices: 'cpu*3', collectiveTimeoutMs: 20_000, layout: { extraTowers: 'threads' } });
    // Tower 1's step program fails at its forward fault point as a kernel error would (contract section 1).
    try {
      injectFaults(rt, (step, rank) => (step === 2 && rank === 1 ? { at: 'forward', kind: 'throw' } : undefined));
      const run = rt.train({ model, optimizer, data: mnist({ batchSize: 128 }), steps: 5 });
      const t0 = performance.now();
      let failed: Error | undefined;
      run.events$.subscribe((e) => e.type === 'failed' && (failed = e.error));
      await assert.rejects(run.done, (e: Error) => e instanceof TowerError && e.device === 'cpu:1' && /injected fault at point 0 on cpu:1/.test(e.message));
      assert.ok(performance.now() - t0 < 5000 + 3000, 'reported quickly (set-up included)');
      await new Promise((r) => setTimeout(r, 20));
      assert.ok(failed && /cpu:1/.test(failed.message));
    } finally {
      await rt.close();
    }
  });

  it('a worker killed mid-run errors within 5 s naming the device; close returns; no threads or buffers left', async () => {
    const rt = await createRuntime({ devices: 'cpu*3', collectiveTimeoutMs: 60_000, layout: { extraTowers: 'threads' } });
    const run = rt.train({ model, optimizer, data: mnist({ batchSize: 128 }), steps: 100000 });
    await new Promise<void>((resolve) => {
      const sub = run.steps$.subscribe((e) => {
        if (e.step === 5) {
          sub.unsubscribe();
          resolve();
        }
      });
    });
    const t0 = performance.now();
    void killTower(rt, 2);
    await assert.rejects(run.done, (e: Error) => /cpu:2/.test(e.message));
    const dt = performance.now() - t0;
    assert.ok(dt < 5000, `error after ${dt.toFixed(0)} ms`);
    await rt.close();
    const s = native().stats();
    assert.equal(s.devices, 0, 'no device threads left');
    assert.equal(s.comms, 0);
  });
});
