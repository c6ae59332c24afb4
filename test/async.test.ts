// Mode 'async' on the towers of one process: MNIST accuracy (default bound, and lock-step), the staleness bound
// with one tower slowed by a stall fault (s = 0, 1, 4), a tower killed mid-run and a resumed checkpoint, a stalled
// tower dropped at its deadline, the non-finite guard at apply time, the observers, and the options it refuses.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRuntime, mnist, TowerError, type RunEvent, type StepEvent, type TrainOptions } from '../src/runtime.js';
import { ConfigError, NonFiniteError } from '../src/errors.js';
import { mnistMlp } from '../src/model/spec.js';
import { injectFaults, killTower } from '../src/testing/faults.js';
import { StalenessGate } from '../src/async/gate.js';
import { BatchDispenser, BatchIndex } from '../src/async/batches.js';

const small = mnistMlp(64);
const optimizer = { type: 'momentum' as const, lr: 0.05, momentum: 0.9 };

interface Seen {
  steps: StepEvent[];
  events: RunEvent[];
}

/** Trains on `devices` with mode 'async'; returns the summary (or the error) and what the streams said. */
async function train(devices: string, o: Omit<TrainOptions, 'mode'>, setUp?: (rt: object) => void, during?: (rt: object, e: StepEvent) => void) {
  const rt = await createRuntime({ devices });
  const seen: Seen = { steps: [], events: [] };
  try {
    setUp?.(rt);
    const run = rt.train({ ...o, mode: 'async' });
    run.steps$.subscribe((e) => {
      seen.steps.push(e);
      during?.(rt, e);
    });
    run.events$.subscribe((e) => seen.events.push(e));
    const result = await run.done.then(
      (summary) => ({ summary, error: undefined }),
      (error: Error) => ({ summary: undefined, error }),
    );
    await new Promise((r) => setTimeout(r, 10)); // the streams are delivered asynchronously
    return { ...result, seen };
  } finally {
    await rt.close();
  }
}

describe('the staleness gate and the batch dispenser', () => {
  it('a tower waits while it is more than s rounds ahead of the slowest live tower; a drop releases it', async () => {
    const g = new StalenessGate(3, 1);
    g.advance(0);
    assert.equal(g.canStart(0), true);
    g.advance(0);
    assert.equal(g.canStart(0), false, '2 rounds ahead of towers 1 and 2');
    let released = false;
    const w = g.wait(0).then(() => (released = true));
    g.advance(1);
    await new Promise((r) => setImmediate(r));
    assert.equal(released, false, 'tower 2 still holds it back');
    g.drop(2);
    await w;
    assert.equal(released, true);
    assert.equal(g.minClock(), 1);
  });

  it('batch n is the same batch wherever it is computed; a given-back batch is handed out again', () => {
    const order = { count: 100, batchSize: 10, lastBatch: 'drop' as const, shuffle: true, seed: 3 };
    const a = new BatchIndex(order);
    const b = new BatchIndex(order);
    assert.deepEqual(a.at(13).indices, b.at(13).indices);
    assert.deepEqual([a.at(13).epoch, a.at(13).index], [1, 3]);
    const d = new BatchDispenser(0, 3);
    assert.deepEqual([d.take(), d.take()], [0, 1]);
    d.giveBack(0);
    assert.deepEqual([d.take(), d.take(), d.take()], [0, 2, undefined]);
    assert.equal(d.exhausted, true);
  });
});

describe('MNIST 784-500-10 on 3 CPU towers, asynchronously', () => {
  const o = (epochs: number) => ({
    model: mnistMlp(),
    optimizer: { type: 'momentum' as const, lr: { type: 'exponential' as const, lr: 0.05, decayRate: 0.5, decaySteps: 937, staircase: true }, momentum: 0.9 },
    data: mnist({ batchSize: 64 }),
    epochs,
    seed: 4,
    evaluate: true,
  });

  it('reaches >= 97.5% test accuracy with the default staleness bound', async () => {
    const { summary, error, seen } = await train('cpu*3', o(3));
    assert.equal(error, undefined);
    const per = [0, 0, 0];
    for (const e of seen.steps) per[e.async!.tower]!++;
    console.log(`# async, 3 towers, s = 4: ${summary!.steps} updates (${per.join('/')} per tower), test accuracy ${summary!.evaluation?.accuracy}`);
    assert.ok(per.every((n) => n > 0));
    assert.ok(seen.steps.every((e) => e.async!.staleness <= 4));
    assert.ok(summary!.evaluation!.accuracy >= 0.975, `accuracy ${summary!.evaluation!.accuracy}`);
  });

  it('with maxStaleness 0 (lock-step rounds) reaches the synchronous accuracy, >= 98.0%', async () => {
    const { summary, error, seen } = await train('cpu*3', { ...o(5), maxStaleness: 0 });
    assert.equal(error, undefined);
    console.log(`# async, 3 towers, s = 0: ${summary!.steps} updates, test accuracy ${summary!.evaluation?.accuracy}`);
    assert.ok(seen.steps.every((e) => e.async!.staleness === 0 && e.async!.lag <= 2));
    assert.ok(summary!.evaluation!.accuracy >= 0.98, `accuracy ${summary!.evaluation!.accuracy}`);
  });
});
