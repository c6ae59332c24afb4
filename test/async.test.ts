// Mode 'async' on the towers of one process: MNIST accuracy (default bound, and lock-step), the staleness bound
// with one tower slowed by a stall fault (s = 0, 1, 4), lock-step rounds reproducible under stalls, a tower killed
// mid-run and a resumed checkpoint, a stalled tower dropped at its deadline, the non-finite guard at apply time, the
// observers, and the options it refuses.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createRuntime, mnist, TowerError, type RunEvent, type StepEvent, type TrainOptions } from '../src/runtime.js';
import { ConfigError, NonFiniteError } from '../src/errors.js';
import { mnistMlp } from '../src/model/spec.js';
import { injectFaults, killTower } from '../src/testing/faults.js';
import { StalenessGate } from '../src/async/gate.js';
import { LockStepRounds } from '../src/async/rounds.js';
import { asyncRunKind } from '../src/async/kind.js';
import { parseTrainOptions } from '../src/options.js';
import { BatchDispenser, BatchIndex } from '../src/async/batches.js';

const small = mnistMlp(64);
const optimizer = { type: 'momentum' as const, lr: 0.05, momentum: 0.9 };

interface Seen {
  steps: StepEvent[];
  events: RunEvent[];
}

/** Trains on `devices` with mode 'async'; returns the summary (or the error) and what the streams said. */
async function train(devices: string, o: Omit<TrainOptions, 'mode'>, setUp?: (rt: object) => void, during?: (rt: object, e: StepEvent) => void) {
  const rt = await createRuntime({ devices, layout: { extraTowers: 'threads' } }); // every worker its own thread (Note [CPU layout])
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

  it('lock-step rounds: pushes wait for every live tower, then go in batch order; an idle or dropped tower holds nobody back', async () => {
    let live = 3;
    const r = new LockStepRounds(() => live);
    const turns: number[] = [];
    const park = (n: number) => void r.park(n).then(() => turns.push(n));
    const settle = () => new Promise((res) => setImmediate(res));
    park(7);
    park(6);
    await settle();
    assert.deepEqual(turns, [], 'two of three towers parked: nobody pushes');
    live = 2; // the third tower was dropped
    r.check();
    await settle();
    assert.deepEqual(turns, [6], 'batch 6 first');
    park(9); // a tower of the next round parks early: it waits for this round to end and for its peers
    r.done(6);
    await settle();
    assert.deepEqual(turns, [6, 7]);
    r.done(7);
    r.waiting(true); // the other tower finds no batch to take
    await settle();
    assert.deepEqual(turns, [6, 7, 9]);
    r.done(9);
    r.waiting(false);
    park(10);
    await settle();
    assert.deepEqual(turns, [6, 7, 9], 'with the other tower busy again, 10 waits');
    r.close();
    await settle();
    assert.deepEqual(turns, [6, 7, 9, 10], 'close releases it');
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

  const perPush = { type: 'momentum' as const, lr: { type: 'exponential' as const, lr: 0.1 / 3, decayRate: 0.9, decaySteps: 937, staircase: true }, momentum: 0.9 };

  it('reaches >= 97.5% test accuracy with the default staleness bound', async () => {
    // lr 0.1 / 3 per push: about the synchronous step size per example (docs/async.md); evaluated on the EMA. Five
    // epochs: four ended at 97.7% (under load as well), too close to the bar for a run whose push order varies.
    const { summary, error, seen } = await train('cpu*3', { ...o(5), optimizer: perPush, emaDecay: 0.999 });
    assert.equal(error, undefined);
    const per = [0, 0, 0];
    for (const e of seen.steps) per[e.async!.tower]!++;
    console.log(`# async, 3 towers, s = 4: ${summary!.steps} updates (${per.join('/')} per tower), test accuracy ${summary!.evaluation?.accuracy}`);
    assert.ok(per.every((n) => n > 0));
    assert.ok(seen.steps.every((e) => e.async!.staleness <= 4));
    assert.ok(summary!.evaluation!.accuracy >= 0.975, `accuracy ${summary!.evaluation!.accuracy}`);
  });

  it('with maxStaleness 0 (lock-step rounds) reaches the synchronous accuracy, >= 98.0%', async () => {
    // Lock-step rounds apply three pushes computed on the same weights: lr 0.1 / 3 per push is the synchronous
    // step size per example (global batch 192 at lr 0.1). Evaluated on the EMA, as test/mnist-tower.test.ts does.
    // The run is reproducible (Note [Lock-step rounds]): one accuracy per machine's kernels, 98.14% on the AVX2 VM of
    // 2026-12-01 (before, the push order varied with timing: 98.07-98.21% in earlier sessions' runs).
    const lockStep = { ...o(7), optimizer: perPush };
    const { summary, error, seen } = await train('cpu*3', { ...lockStep, maxStaleness: 0, emaDecay: 0.999 });
    assert.equal(error, undefined);
    console.log(`# async, 3 towers, s = 0: ${summary!.steps} updates, test accuracy ${summary!.evaluation?.accuracy}`);
    assert.ok(seen.steps.every((e) => e.async!.staleness === 0 && e.async!.lag <= 2));
    assert.ok(summary!.evaluation!.accuracy >= 0.98, `accuracy ${summary!.evaluation!.accuracy}`);
  });
});

describe('the staleness bound, one tower slowed by a stall at its forward fault point', () => {
  for (const s of [0, 1, 4]) {
    it(`maxStaleness ${s}: no applied gradient more than ${s} rounds stale; the fast towers kept going`, async () => {
      const slow = (_step: number, rank: number) => (rank === 2 ? { at: 'forward' as const, kind: 'stall' as const, ms: 40 } : undefined);
      const { summary, error, seen } = await train('cpu*3', { model: small, optimizer, data: mnist({ batchSize: 32 }), steps: 60, seed: 1, maxStaleness: s }, (rt) =>
        injectFaults(rt, slow),
      );
      assert.equal(error, undefined);
      assert.equal(summary!.steps, 60);
      const per = [0, 0, 0];
      for (const e of seen.steps) per[e.async!.tower]!++;
      const worst = Math.max(...seen.steps.map((e) => e.async!.staleness));
      console.log(`# s = ${s}: updates per tower ${per.join('/')}, largest staleness ${worst}`);
      assert.equal(seen.steps.length, 60, 'one step event per applied update');
      assert.ok(worst <= s, `an update was ${worst} rounds stale, more than maxStaleness ${s}`);
      if (s === 0) assert.ok(Math.max(...per) - Math.min(...per) <= 1, `lock-step rounds: ${per.join('/')}`);
      else {
        assert.equal(worst, s, 'the fast towers ran up to the bound');
        assert.ok(per[0]! >= per[2]! + s && per[1]! >= per[2]! + s, `fast towers ${per[0]}, ${per[1]} vs the slowed one ${per[2]}`);
      }
    });
  }
});

describe('lock-step rounds (maxStaleness 0; Note [Lock-step rounds])', () => {
  it('every tower of a round pulls the same weights and the pushes land in batch order, so towers slowed by stalls change no bit', async () => {
    // 20 rounds of 3 pushes. Slowed: tower 2 at every even step, tower 0 at every third, 30 ms at the forward fault
    // point (after the pull), so a slowed tower's push would otherwise land after the others' of its round.
    const o = { model: small, optimizer, data: mnist({ batchSize: 32 }), steps: 60, seed: 5, maxStaleness: 0, evaluate: true };
    const slow = (step: number, rank: number) =>
      (rank === 2 && step % 2 === 0) || (rank === 0 && step % 3 === 0) ? { at: 'forward' as const, kind: 'stall' as const, ms: 30 } : undefined;
    const plain = await train('cpu*3', o);
    const slowed = await train('cpu*3', o, (rt) => injectFaults(rt, slow));
    for (const r of [plain, slowed]) {
      assert.equal(r.error, undefined);
      assert.equal(r.seen.steps.length, 60);
      for (const e of r.seen.steps) {
        const lag = (e.step - 1) % 3;
        assert.deepEqual([e.async!.lag, e.async!.pulledVersion], [lag, e.step - 1 - lag], `update ${e.step}: its round's towers all pulled version ${e.step - 1 - lag}`);
      }
    }
    const byStep = (r: typeof plain) => [...r.seen.steps].sort((a, b) => a.step - b.step).map((e) => [e.step, e.loss, e.gradientNorm]);
    assert.deepEqual(byStep(slowed), byStep(plain), 'each update: the same batch on the same weights');
    assert.deepEqual(slowed.summary!.evaluation, plain.summary!.evaluation, 'the same weights at the end');
    const towers = (r: typeof plain) => r.seen.steps.map((e) => e.async!.tower).join('');
    console.log(`# lock-step: pushing towers by update, plain ${towers(plain)}, slowed ${towers(slowed)}`);
  });
});

describe('a tower lost in an asynchronous run', () => {
  it('a tower killed mid-run is dropped with an event naming it; training goes on; the checkpoint resumes', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tl-async-'));
    try {
      const o = { model: small, optimizer, data: mnist({ batchSize: 32 }), seed: 2, checkpoint: { dir, everySteps: 20 } };
      let killed: Promise<TowerError> | undefined;
      const first = await train('cpu*3', { ...o, steps: 80 }, undefined, (rt, e) => {
        if (e.step === 20 && !killed) killed = killTower(rt, 1);
      });
      assert.equal(first.error, undefined);
      assert.ok(killed, 'the kill happened');
      await killed;
      assert.equal(first.summary!.steps, 80, 'all 80 updates were taken after the kill');
      const dropped = first.seen.events.filter((e) => e.type === 'towerDropped');
      assert.equal(dropped.length, 1);
      assert.ok(dropped[0]!.type === 'towerDropped' && dropped[0]!.tower === 1 && dropped[0]!.device === 'cpu:1' && dropped[0]!.remaining === 2, JSON.stringify(dropped[0]));
      const after = first.seen.steps.filter((e) => e.step > dropped[0]!.step + 2);
      assert.ok(after.length > 20 && after.every((e) => e.async!.tower !== 1), 'only towers 0 and 2 pushed after the drop');
      assert.ok(first.seen.events.some((e) => e.type === 'checkpoint' && e.step === 80));

      const second = await train('cpu*3', { ...o, steps: 100, checkpoint: { ...o.checkpoint, resume: true } });
      assert.equal(second.error, undefined);
      const resumed = second.seen.events.find((e) => e.type === 'resumed');
      assert.ok(resumed && resumed.type === 'resumed' && resumed.step === 80 && !resumed.bitIdentical, JSON.stringify(resumed));
      assert.equal(second.summary!.steps, 100);
      assert.equal(Math.min(...second.seen.steps.map((e) => e.step)), 81, 'versions continue from the checkpoint');
      // One update's loss is one tower's batch of 32 (noisy: 1.23 once in CI); the mean of five is the weights' loss.
      const mean = (xs: number[]) => xs.reduce((x, y) => x + y, 0) / xs.length;
      const lastLoss = mean(first.seen.steps.slice(-5).map((e) => e.loss));
      const firstLoss = mean(second.seen.steps.slice(0, 5).map((e) => e.loss));
      console.log(`# mean loss of the last 5 updates ${lastLoss.toFixed(3)} (${first.seen.steps.slice(-5).map((e) => e.loss.toFixed(2)).join(' ')}), of the first 5 after resume ${firstLoss.toFixed(3)}`);
      assert.ok(firstLoss < 1.2 && lastLoss < 1.2, `the restored weights are trained ones: mean loss of 5 updates ${lastLoss} before, ${firstLoss} after resume (fresh weights give ~2.3)`);
      assert.ok((await readdir(dir)).some((f) => f.includes('100')));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("a stalled tower misses its deadline and is dropped, naming it; the others finish the run", async () => {
    const stall = (step: number, rank: number) => (rank === 0 && step === 3 ? { at: 'backward' as const, kind: 'stall' as const, ms: 2500 } : undefined);
    const { summary, error, seen } = await train('cpu*3', { model: small, optimizer, data: mnist({ batchSize: 32 }), steps: 40, seed: 3, guard: { stepTimeoutMs: 800 } }, (rt) =>
      injectFaults(rt, stall),
    );
    assert.equal(error, undefined);
    assert.equal(summary!.steps, 40);
    const dropped = seen.events.find((e) => e.type === 'towerDropped');
    assert.ok(dropped && dropped.type === 'towerDropped' && dropped.device === 'cpu:0' && /deadline|800 ms/.test(dropped.reason), JSON.stringify(dropped));
  });

  it('minTowers: the run fails naming the tower when too few remain', async () => {
    let killed: Promise<TowerError> | undefined;
    const { error, seen } = await train('cpu*2', { model: small, optimizer, data: mnist({ batchSize: 32 }), steps: 200, seed: 3, minTowers: 2 }, undefined, (rt, e) => {
      if (e.step === 5 && !killed) killed = killTower(rt, 0);
    });
    await killed;
    assert.ok(error instanceof TowerError, String(error));
    assert.match(error.message, /cpu:0/);
    assert.match(error.message, /minTowers/);
    assert.ok(seen.events.some((e) => e.type === 'failed'));
  });
});

describe('guards and options of the asynchronous mode', () => {
  it('the non-finite guard runs at apply time and names the tower', async () => {
    const nan = (step: number, rank: number) => (rank === 1 && step === 4 ? { at: 'gradient' as const, kind: 'nan' as const, index: 5 } : undefined);
    const { error } = await train('cpu*3', { model: small, optimizer, data: mnist({ batchSize: 32 }), steps: 30, seed: 3 }, (rt) => injectFaults(rt, nan));
    assert.ok(error instanceof NonFiniteError, String(error));
    assert.match(error.message, /cpu:1/);
  });

  it('refuses what the mode cannot do, and async-only options on a synchronous run', async () => {
    const rt = await createRuntime({ devices: 'cpu*2' });
    try {
      const base = { model: small, optimizer, data: mnist({ batchSize: 32 }), steps: 5 };
      assert.throws(() => rt.train({ ...base, mode: 'async', guard: { nonFinite: 'rollback' } }), (e: unknown) => e instanceof ConfigError && /rollback/.test(e.message));
      assert.throws(() => rt.train({ ...base, mode: 'async', minTowers: 3 }), (e: unknown) => e instanceof ConfigError && /minTowers/.test(e.message));
      assert.throws(() => rt.train({ ...base, maxStaleness: 2 }), (e: unknown) => e instanceof ConfigError && /mode 'async'/.test(e.message));
      const inGroup = parseTrainOptions({ ...base, mode: 'async' });
      assert.throws(() => asyncRunKind(inGroup, 2, 2, {}), (e: unknown) => e instanceof ConfigError && /process group of 2 processes/.test(e.message) && /TOWERLINE_ASYNC_ROLE/.test(e.message));
    } finally {
      await rt.close();
    }
  });
});

describe('the command line', () => {
  const BIN = fileURLToPath(new URL('../bin/towerline.mjs', import.meta.url));
  const cli = (...args: string[]) => spawnSync(process.execPath, [BIN, 'train', '--devices', 'cpu*2', '--steps', '12', '--batch-size', '32', '--log-every', '4', ...args], { encoding: 'utf8', timeout: 120_000 });

  it('--mode async --max-staleness 1 --staleness-lr trains asynchronously; a bad --max-staleness is refused naming the flag', () => {
    const ok = cli('--mode', 'async', '--max-staleness', '1', '--staleness-lr');
    assert.equal(ok.status, 0, ok.stderr);
    assert.match(ok.stdout, /done: 12 steps/);
    const bad = cli('--mode', 'async', '--max-staleness', '-1');
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr + bad.stdout, /--max-staleness: expected a whole number >= 0 or 'unbounded'; given '-1'/);
  });
});

describe('one tower, lock-step', () => {
  it('reproduces the synchronous run on one device update for update (the server runs the same update program)', async () => {
    const o = { model: small, optimizer: { type: 'momentum' as const, lr: { type: 'exponential' as const, lr: 0.1, decayRate: 0.5, decaySteps: 10, staircase: true }, momentum: 0.9 }, data: mnist({ batchSize: 32 }), steps: 25, seed: 1 };
    const losses: Record<string, number[]> = {};
    for (const mode of ['sync', 'async'] as const) {
      const rt = await createRuntime({ devices: 'cpu:0' });
      try {
        const run = rt.train({ ...o, mode, ...(mode === 'async' ? { maxStaleness: 0 } : {}) });
        const seen: number[] = [];
        run.steps$.subscribe((e) => seen.push(e.loss, Math.fround(e.learningRate))); // the server reports its float32 rate
        await run.done;
        await new Promise((r) => setTimeout(r, 10));
        losses[mode] = seen;
      } finally {
        await rt.close();
      }
    }
    assert.equal(losses.async!.length, 50);
    assert.deepEqual(losses.async, losses.sync);
  });
});

describe('what observes an asynchronous run', () => {
  it('TensorBoard gets staleness and lag scalars and histograms; the timeline has a server track and a track per tower', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tl-async-obs-'));
    try {
      const traceFile = join(dir, 'trace.json');
      const { error } = await train('cpu*2', { model: small, optimizer, data: mnist({ batchSize: 32 }), steps: 30, seed: 5, logDir: dir, histogramsEvery: 10, traceFile });
      assert.equal(error, undefined);
      const files = await readdir(dir);
      const asyncFile = files.find((f) => f.endsWith('.async'));
      assert.ok(asyncFile, `no .async event file among ${files.join(', ')}`);
      const bytes = (await readFile(join(dir, asyncFile))).toString('latin1');
      for (const tag of ['async/staleness', 'async/lag']) assert.ok(bytes.includes(tag), `no ${tag} in ${asyncFile}`);
      const trace = JSON.parse(await readFile(traceFile, 'utf8')) as { traceEvents: Array<{ name: string; ph: string; tid: number; args?: { name?: string } }> };
      const names = trace.traceEvents.filter((e) => e.ph === 'M').map((e) => e.args?.name);
      assert.ok(names.includes('parameter server') && names.some((n) => /^tower 1 /.test(n ?? '')), JSON.stringify(names));
      const spans = trace.traceEvents.filter((e) => e.ph === 'X');
      assert.equal(spans.filter((e) => e.tid === 0 && /^apply \(tower [01]\)$/.test(e.name)).length, 30, 'one apply span per update');
      for (const tid of [1, 2]) assert.ok(spans.some((e) => e.tid === tid && e.name === 'push'), `tower track ${tid} has its pushes`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
