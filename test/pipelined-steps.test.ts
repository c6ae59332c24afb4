// Pipelined steps (Note [Pipelined steps] in src/coordinator/pipeline.ts): step t+1 launched while step t runs gives
// the same weights, bit for bit, and the same events as one step at a time, on in-process reference towers and on
// worker towers (native cpu devices), with a NaN injected under every non-finite policy, a worker killed
// mid-pipeline, and checkpoints taken during a pipelined run. Nothing here is timed.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp } from 'node:fs/promises';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInProcessRuntime } from '../src/advanced.js';
import { blocks, createRuntime, type ModelSpec, type RunEvent, type StepEvent } from '../src/index.js';
import type { Runtime } from '../src/runtime.js';
import { internalsOf } from '../src/coordinator/internals.js';
import { injectFaults, killTower, type Fault } from '../src/testing/faults.js';
import { sameBits } from './support/runtime.js';
import { StepLauncher } from '../src/tower-port/step-launcher.js';
import { HyperSlot } from '../src/native/hyper.js';
import type { StepLaunch } from '../src/model/step-program.js';
import type { StepRequest } from '../src/tower-port/protocol.js';
import { TowerError } from '../src/errors.js';
import { towerline } from './support/cli.js';

const DIM = 24;
const init = { type: 'truncatedNormal' as const, stddev: 0.3 };
// Two dense layers (tanh, L2 on the first): small enough to run 30 steps many times.
const model: ModelSpec = { name: 'pipe', input: { shape: [DIM] }, layers: [{ type: 'dense', units: 12, activation: 'tanh', kernelInit: init, l2: 1e-3 }, { type: 'dense', units: 5, kernelInit: init }] };
// A decaying learning rate: every step's hyper block differs, so a step launched with the wrong one would show.
const optimizer = { type: 'momentum' as const, lr: { type: 'exponential' as const, lr: 0.05, decayRate: 0.9, decaySteps: 1 }, momentum: 0.9 };
// 240 rows at batch 30: an epoch ends every 8 steps (the pipeline drains there).
const data = () => blocks({ batchSize: 30, count: 240, dim: DIM, seed: 3 });

type Open = () => Promise<Runtime>;
const dirSync = () => mkdtempSync(join(tmpdir(), 'tl-pipe-'));
const reference = (n: number): Open => () => createInProcessRuntime({ devices: `cpu*${n}`, backend: 'reference', reduction: { algorithm: 'ring' }, collectiveTimeoutMs: 20_000 });
const workers = (n: number): Open => () => createRuntime({ devices: `cpu*${n}`, reduction: { algorithm: 'ring' }, collectiveTimeoutMs: 60_000, layout: { extraTowers: 'threads' } });

/** Counts the steps each tower was given `chained` (launched behind an unconsumed step) and those its device
 * cancelled, passing every call on. */
function countChained(rt: Runtime): { chained: number; all: number; cancelled: number } {
  const seen = { chained: 0, all: 0, cancelled: 0 };
  for (const port of internalsOf(rt).towers.ports) {
    const step = port.step.bind(port);
    port.step = (req, ms, fault, chained) => {
      seen.all++;
      if (chained) seen.chained++;
      return step(req, ms, fault, chained).then((r) => ((seen.cancelled += r.cancelled ? 1 : 0), r));
    };
  }
  return seen;
}

interface Outcome {
  steps: StepEvent[];
  events: RunEvent[];
  error: string | undefined;
  weights: Array<Map<string, Float32Array>>;
  chained: number;
  cancelled: number;
}

/** The fields of a step event that do not depend on wall time. */
function exact(e: StepEvent) {
  return { step: e.step, epoch: e.epoch, loss: e.loss, learningRate: e.learningRate, gradientNorm: e.gradientNorm, batchSize: e.batchSize, shardSizes: e.shardSizes, devices: e.towers.map((t) => t.device) };
}

/** Other events without paths (each run writes its own checkpoints) and wall times. */
function exactEvent(e: RunEvent): unknown {
  const { path: _path, ...rest } = e as RunEvent & { path?: string };
  return rest;
}

async function trainOn(rt: Runtime, opts: Record<string, unknown>, fault?: Plan): Promise<Outcome> {
  injectFaults(rt, fault);
  const seen = countChained(rt);
  const run = rt.train({ model, optimizer, data: data(), steps: 30, seed: 5, ...opts });
  const steps: StepEvent[] = [];
  const events: RunEvent[] = [];
  run.steps$.subscribe((e) => steps.push(e));
  run.events$.subscribe((e) => events.push(e));
  const error = await run.done.then(
    () => undefined,
    (e: Error) => e.message,
  );
  await new Promise((r) => setTimeout(r, 10)); // the asap-scheduled last events
  return { steps, events, error, weights: await rt.readWeights(), chained: seen.chained, cancelled: seen.cancelled };
}

type Plan = (step: number, rank: number) => Fault | undefined;

/** Trains the same run pipelined and one step at a time, each on a fresh runtime with a fresh fault plan. */
async function both(open: Open, opts: (pipeline: boolean) => Record<string, unknown>, fault?: () => Plan): Promise<[Outcome, Outcome]> {
  const on = async (pipeline: boolean) => {
    const rt = await open();
    try {
      return await trainOn(rt, { ...opts(pipeline), pipeline }, fault?.());
    } finally {
      await rt.close();
    }
  };
  return [await on(true), await on(false)];
}

function assertSame(p: Outcome, s: Outcome, what: string): void {
  const started = (o: Outcome) => (o.events.find((e) => e.type === 'started') as { pipeline?: unknown } | undefined)?.pipeline;
  assert.deepEqual(started(p), { depth: 2 }, `${what}: 'started' says the steps are pipelined`);
  assert.deepEqual(started(s), { depth: 0, off: 'pipeline: false' }, `${what}: 'started' says why not`);
  assert.equal(p.error, s.error, `${what}: the same failure`);
  assert.deepEqual(p.steps.map(exact), s.steps.map(exact), `${what}: the same step events`);
  assert.deepEqual(p.events.filter((e) => e.type !== 'started').map(exactEvent), s.events.filter((e) => e.type !== 'started').map(exactEvent), `${what}: the same run events`);
  assert.equal(p.weights.length, s.weights.length);
  p.weights.forEach((tower, r) => {
    for (const [name, w] of tower) assert.ok(sameBits(w, s.weights[r]!.get(name)!), `${what}: tower ${r} '${name}' differs from the sequential run`);
  });
  assert.equal(s.chained, 0, `${what}: pipeline: false launches nothing chained`);
}

for (const [port, open] of [['in-process reference', reference], ['worker', workers]] as const) {
  describe(`pipelined steps on ${port} towers`, () => {
    for (const n of [1, 2, 3]) {
      it(`${n} tower${n > 1 ? 's' : ''}: 30 steps pipelined equal 30 steps one at a time (weights bit-identical, same events)`, async () => {
        // A replica check every 7 steps and the end of every epoch (8 steps) drain the pipeline.
        const [p, s] = await both(open(n), () => ({ guard: { replicaCheckEvery: 7 } }));
        assertSame(p, s, `${n} towers`);
        assert.equal(p.steps.length, 30);
        assert.deepEqual(p.events.filter((e) => e.type === 'replicas').map((e) => [(e as { step: number }).step, (e as { consistent: boolean }).consistent]), [7, 14, 21, 28].map((k) => [k, true]));
        // Every step is launched behind its predecessor but the first and those after a drain: the ends of epochs
        // (steps 8, 16, 24) and, with more than one tower, the replica checks (7, 14, 21, 28); one tower has no
        // replicas to compare, so its checks drain nothing.
        assert.equal(p.chained, n * (n === 1 ? 30 - 4 : 30 - 8), `pipelined: ${p.chained} chained launches over ${n} towers`);
      });
    }
  });
}

describe('pipelined steps: a NaN at step k gives the sequential outcome under every non-finite policy', () => {
  const nanAt = (k: number, rank: number) => (): Plan => {
    let armed = true; // once: a rollback replays step k without it
    return (step, r) => (step === k && r === rank && armed ? ((armed = false), { at: 'gradient', kind: 'nan', index: 3 }) : undefined);
  };
  for (const [port, open] of [['in-process reference', reference(2)], ['worker', workers(2)]] as const) {
    it(`halt (${port}): the same error and the weights of step k-1 on every tower`, async () => {
      const [p, s] = await both(open, () => ({ guard: { nonFinite: 'halt' } }), nanAt(6, 1));
      assert.match(p.error ?? '', /step 6/);
      assertSame(p, s, 'halt');
      assert.equal(p.steps.length, 5);
    });

    it(`skip (${port}): step k skipped, the steps behind it run again, the same 30 steps`, async () => {
      const [p, s] = await both(open, () => ({ guard: { nonFinite: 'skip' } }), nanAt(6, 1));
      assertSame(p, s, 'skip');
      assert.deepEqual(p.events.filter((e) => e.type === 'skipped').map((e) => (e as { step: number }).step), [6]);
      assert.equal(p.steps.length, 29);
      // Steps 7 and 8 were in flight behind step 6 (depth two) and cancelled on both towers, then run again.
      assert.equal(p.cancelled, 2 * 2, 'two steps cancelled per tower');
      assert.equal(s.cancelled, 0);
    });

    it(`rollback (${port}): restored from the checkpoint with a lower rate, the same weights after`, async () => {
      const [p, s] = await both(open, () => ({ guard: { nonFinite: 'rollback' }, checkpoint: { dir: dirSync(), everySteps: 4 } }), nanAt(6, 1));
      assertSame(p, s, 'rollback');
      const rb = p.events.find((e) => e.type === 'rolledBack');
      assert.equal((rb as { step: number } | undefined)?.step, 4);
    });
  }
});

describe('pipelined steps: stop', () => {
  it('the steps already launched are landed and reported, and the weights are those of the last reported step', async () => {
    const stopAt = 3;
    const rt = await reference(2)();
    const reported: number[] = [];
    let done!: { steps: number };
    let weights!: Array<Map<string, Float32Array>>;
    try {
      const run = rt.train({ model, optimizer, data: data(), steps: 200, seed: 5 });
      run.steps$.subscribe((e) => {
        reported.push(e.step);
        if (e.step === stopAt) run.stop();
      });
      done = await run.done;
      await new Promise((r) => setTimeout(r, 10)); // the asap-scheduled last events
      weights = await rt.readWeights();
    } finally {
      await rt.close();
    }
    assert.ok(done.steps >= stopAt && done.steps < 200, `stopped after ${done.steps} steps`);
    assert.deepEqual(reported, Array.from({ length: done.steps }, (_, i) => i + 1), 'every step kept is reported, once, in order');
    // The same number of steps one at a time: the same weights, so no launched step was applied unreported.
    const [, s] = await both(reference(2), () => ({ steps: done.steps }));
    weights.forEach((tower, r) => {
      for (const [name, w] of tower) assert.ok(sameBits(w, s.weights[r]!.get(name)!), `tower ${r} '${name}' differs from ${done.steps} steps one at a time`);
    });
  });
});

describe('pipelined steps: failures and checkpoints', () => {
  it('a worker killed mid-pipeline fails the run naming its tower, not a step queued behind', { timeout: 120_000 }, async () => {
    const rt = await createRuntime({ devices: 'cpu*2', collectiveTimeoutMs: 600_000 });
    try {
      const run = rt.train({ model, optimizer, data: data(), steps: 1_000_000, seed: 1, guard: { stepTimeoutMs: 600_000 } });
      let killed = false;
      run.steps$.subscribe((e) => {
        if (e.step === 5 && !killed) {
          killed = true;
          void killTower(rt, 1);
        }
      });
      await assert.rejects(run.done, (e: Error) => /cpu:1/.test(e.message) && !/not run|cancelled/.test(e.message));
      assert.ok(killed);
    } finally {
      await rt.close();
    }
  });

  it('checkpoints taken during a pipelined run resume bit-identically (in-process native towers)', async () => {
    const run = async (dir: string, steps: number, resume: boolean) => {
      const rt = await createInProcessRuntime({ devices: 'cpu*2', backend: 'native' });
      try {
        const seen = countChained(rt);
        await rt.train({ model, optimizer, emaDecay: 0.9, data: data(), steps, seed: 4, checkpoint: { dir, everySteps: 3, resume } }).done;
        return { weights: await rt.readWeights(), chained: seen.chained };
      } finally {
        await rt.close();
      }
    };
    const full = await run(await mkdtemp(join(tmpdir(), 'tl-pipe-full-')), 20, false);
    const dir = await mkdtemp(join(tmpdir(), 'tl-pipe-resume-'));
    const first = await run(dir, 11, false);
    const resumed = await run(dir, 20, true);
    assert.ok(full.chained > 0 && first.chained > 0 && resumed.chained > 0, 'the runs were pipelined');
    full.weights.forEach((tower, r) => {
      for (const [name, w] of tower) assert.ok(sameBits(w, resumed.weights[r]!.get(name)!), `tower ${r} '${name}': resumed differs from uninterrupted`);
    });
  });
});

describe('the step launcher keeps call order', () => {
  it('steps called while the launch handles are being prepared reach the device in call order, prepared once', async () => {
    const prepares: Array<(l: StepLaunch) => void> = [];
    const ran: number[] = [];
    const launcher = new StepLauncher('fake:0', {
      prepare: () => new Promise<StepLaunch>((resolve) => prepares.push(resolve)),
      run: (_program, writes) => {
        ran.push(writes[1]![1][HyperSlot.step]!); // the hyper block's step number, read at the call (runWith copies)
        return Promise.resolve({ values: [1, 0, 1], marks: [], startMs: 0, waitMs: 0, guardTripped: false });
      },
      status: () => ({ marks: [], currentOp: -1 }),
      clockOffsetMs: 0,
      deadCause: () => undefined,
    });
    const q = (t: number): StepRequest => ({ dataset: 'train', indices: new Int32Array([t]), lr: 0.1, t, gradScale: 1 });
    const replies = [launcher.step(q(1), 60_000), launcher.step(q(2), 60_000, undefined, true), launcher.step(q(3), 60_000, undefined, true)];
    await new Promise((r) => setImmediate(r));
    // Resolve whatever prepares were asked for, the last first: an order that depended on them would show.
    for (const resolve of [...prepares].reverse()) resolve({ program: 7, indices: 1, hyper: 2, reads: [3, 4, 5] });
    await Promise.all(replies);
    assert.deepEqual(ran, [1, 2, 3]);
    assert.equal(prepares.length, 1, 'the launch handles are prepared once');
    launcher.close();
  });
});

/** A step launcher over a fake device whose runs answer only when the test resolves them (runs[i].resolve()). */
function heldLauncher() {
  const runs: Array<{ resolve(): void }> = [];
  const launcher = new StepLauncher('fake:0', {
    prepare: () => Promise.resolve({ program: 7, indices: 1, hyper: 2, reads: [3, 4, 5] }),
    run: () => new Promise((resolve) => runs.push({ resolve: () => resolve({ values: [1, 0, 1], marks: [], startMs: 0, waitMs: 0, guardTripped: false }) })),
    status: () => ({ marks: [], currentOp: -1 }),
    clockOffsetMs: 0,
    deadCause: () => undefined,
  });
  const q = (t: number): StepRequest => ({ dataset: 'train', indices: new Int32Array([t]), lr: 0.1, t, gradScale: 1 });
  return { runs, launcher, q };
}

describe('the step deadline of a queued step (Note [Step deadline timer])', () => {
  it('starts when the step before it settles, not at its launch; a missed one rejects the steps behind it', async () => {
    const { runs, launcher, q } = heldLauncher();
    const outcome = (p: Promise<unknown>) => p.then(() => 'ok', (e: unknown) => (e instanceof TowerError ? e.causeText : String(e)));
    const settled: string[] = [];
    const first = outcome(launcher.step(q(1), 600_000)).then((o) => (settled.push(`1 ${o}`), o));
    // Steps 2 and 3 queued behind step 1 with a short deadline: it must not run while step 1 holds the device.
    const second = outcome(launcher.step(q(2), 30, undefined, true)).then((o) => (settled.push(`2 ${o}`), o));
    const third = outcome(launcher.step(q(3), 30, undefined, true)).then((o) => (settled.push(`3 ${o}`), o));
    await new Promise((r) => setTimeout(r, 300)); // ten of the queued steps' deadlines: none may have fired
    assert.equal(settled.length, 0, `nothing settles while step 1 runs: ${settled.join(', ')}`);
    assert.equal(runs.length, 3, 'all three runs were handed to the device');
    runs[0]!.resolve();
    assert.equal(await first, 'ok');
    // Step 2 never answers: its own deadline (started when step 1 settled) rejects it, and step 3 behind it.
    assert.match(await second, /no answer within 30 ms \(deadline\)/);
    assert.match(await third, /not run: the step before it missed its deadline/);
    assert.deepEqual(settled.map((x) => x.slice(0, 1)), ['1', '2', '3']);
    launcher.close();
  });
});

describe('the step deadline timer is not touched per step (Note [Step deadline timer])', () => {
  it('a step with the same deadline as the one before it still gets its whole deadline from when that one settled', async () => {
    const { runs, launcher, q } = heldLauncher();
    const DEADLINE = 200;
    const first = launcher.step(q(1), DEADLINE);
    let rejectedAt = 0;
    const second = launcher.step(q(2), DEADLINE, undefined, true).then(
      () => 'ok',
      (e: unknown) => ((rejectedAt = performance.now()), e instanceof TowerError ? e.causeText : String(e)),
    );
    // Step 1 answers after most of its deadline: the timer set at its start fires before step 2's deadline ends.
    await new Promise((r) => setTimeout(r, DEADLINE * 0.75));
    const settledAt = performance.now();
    runs[0]!.resolve();
    await first;
    // Step 2 never answers: rejected at its own deadline, a whole one after step 1 settled (timers never fire early).
    assert.match(await second, /no answer within 200 ms \(deadline\)/);
    assert.ok(rejectedAt - settledAt >= DEADLINE - 1, `rejected ${(rejectedAt - settledAt).toFixed(1)} ms after step 1 settled, before its ${DEADLINE} ms deadline`);
    // A step after a missed deadline gets a timer again.
    const third = launcher.step(q(3), 30).then(() => 'ok', (e: unknown) => (e instanceof TowerError ? e.causeText : String(e)));
    assert.match(await third, /no answer within 30 ms \(deadline\)/);
    launcher.close();
  });
});

describe('pipeline through the CLI', () => {
  it('--no-pipeline says the steps run one at a time, and prints the same losses as the pipelined default', { timeout: 120_000 }, async () => {
    const args = ['train', '--devices', 'cpu*2', '--extra-towers', 'threads', '--steps', '8', '--seed', '3', '--log-every', '1'];
    const [on, off] = [await towerline(args), await towerline([...args, '--no-pipeline'])];
    assert.equal(on.code, 0, on.err);
    assert.equal(off.code, 0, off.err);
    assert.match(off.out, /^steps launched one at a time \(pipeline: false\)$/m);
    assert.doesNotMatch(on.out, /one at a time/);
    const losses = (out: string) => [...out.matchAll(/^step (\d+), loss = (\S+) /gm)].map((m) => `${m[1]} ${m[2]}`);
    assert.equal(losses(on.out).length, 8);
    assert.deepEqual(losses(off.out), losses(on.out));
    assert.deepEqual(off.out.match(/final loss \S+/)?.[0], on.out.match(/final loss \S+/)?.[0]);
  });
});
