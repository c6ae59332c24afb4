// Asynchronous vs synchronous training on uneven towers (issue 15): MNIST 784-500-10 on 3 CPU towers, one of them
// slowed 3x by a stall injected at its 'forward' fault point on every step (the production step path, Note [Fault
// points]). Both modes run in the same invocation, interleaved, on the same data and seed; each reports
//   examples/sec     = examples trained / time from the first to the last step event, and
//   time to 97%      = seconds from train() to the first end-of-epoch evaluation at >= 97% test accuracy
//                      (the evaluations run on the same test set in both modes; a mode that never gets there in
//                      EPOCHS epochs reports Infinity).
// The stall is calibrated per mode: 2x the median compute time (input + forward + backward) of one tower's batch in
// an unslowed warm-up run, so the slowed tower takes about 3x as long as the others. Synchronous: global batch 192
// (64 per tower), lr 0.1. Asynchronous: maxStaleness 4, 64 per push, lr 0.1 / 3 (three pushes per round of the
// synchronous step's data: the same step size per example). Whichever wins is what the numbers say.
import { createRuntime, mnist, type StepEvent, type TrainOptions } from '../src/runtime.js';
import { mnistMlp } from '../src/model/spec.js';
import { injectFaults } from '../src/testing/faults.js';
import { median, type Row, type Section } from './section.js';

const PER_TOWER = 64;
const EPOCHS = 4;
const REPS = Number(process.env.TOWERLINE_BENCH_ASYNC_REPS ?? 1);
const SLOWED = 2; // rank of the slowed tower
const TARGET = 0.97;

type Mode = 'sync' | 'async';

function options(mode: Mode, epochs: number | undefined, steps?: number): TrainOptions {
  const batch = mode === 'sync' ? 3 * PER_TOWER : PER_TOWER;
  const perEpoch = Math.floor(60000 / batch);
  const lr = mode === 'sync' ? 0.1 : 0.1 / 3;
  return {
    model: mnistMlp(),
    optimizer: { type: 'momentum', lr: { type: 'exponential', lr, decayRate: 0.9, decaySteps: perEpoch, staircase: true }, momentum: 0.9 },
    data: mnist({ batchSize: batch }),
    ...(steps !== undefined ? { steps } : { epochs }),
    seed: 4,
    evaluate: steps === undefined,
    ...(mode === 'async' ? { mode: 'async' as const, maxStaleness: 4 } : {}),
  };
}

/** Median ms of one tower's batch (input + forward + backward) in a short unslowed run. */
async function calibrate(mode: Mode): Promise<number> {
  const rt = await createRuntime({ devices: 'cpu*3', layout: { extraTowers: 'threads' } }); // three real towers, one of them slowed, even on 2 cores
  try {
    const run = rt.train(options(mode, undefined, 40));
    const ms: number[] = [];
    run.steps$.subscribe((e) => {
      if (e.step > 10) for (const t of e.towers) ms.push(t.input + t.forward + t.backward);
    });
    await run.done;
    return median(ms);
  } finally {
    await rt.close();
  }
}

interface Result {
  examplesPerSec: number;
  timeTo97: number;
  accuracy: number;
  slowedShare: number;
}

async function measure(mode: Mode, stallMs: number): Promise<Result> {
  const rt = await createRuntime({ devices: 'cpu*3', layout: { extraTowers: 'threads' } }); // three real towers, one of them slowed, even on 2 cores
  try {
    injectFaults(rt, (_step, rank) => (rank === SLOWED ? { at: 'forward', kind: 'stall', ms: stallMs } : undefined));
    const t0 = performance.now();
    const run = rt.train(options(mode, EPOCHS));
    let first = 0;
    let last = 0;
    let examples = 0;
    let slowed = 0;
    let timeTo97 = Infinity;
    let accuracy = 0;
    run.steps$.subscribe((e: StepEvent) => {
      const now = performance.now();
      if (first === 0) first = now;
      else examples += e.batchSize;
      last = now;
      if (e.async?.tower === SLOWED) slowed += e.batchSize;
    });
    run.events$.subscribe((e) => {
      if (e.type !== 'evaluation') return;
      accuracy = e.accuracy;
      if (e.accuracy >= TARGET && timeTo97 === Infinity) {
        timeTo97 = (performance.now() - t0) / 1000;
        run.stop();
      }
    });
    await run.done;
    return { examplesPerSec: examples / ((last - first) / 1000), timeTo97, accuracy, slowedShare: mode === 'async' ? slowed / Math.max(1, examples) : 1 / 3 };
  } finally {
    injectFaults(rt, undefined);
    await rt.close();
  }
}

export const asyncBench: Section = {
  name: 'async',
  description: `MNIST on 3 CPU towers, tower ${SLOWED} slowed 3x by an injected stall: asynchronous (maxStaleness 4) vs synchronous`,
  async run(): Promise<Row[]> {
    const stall = { sync: 2 * (await calibrate('sync')), async: 2 * (await calibrate('async')) };
    const runs: Record<Mode, Result[]> = { sync: [], async: [] };
    for (let r = 0; r < REPS; r++) for (const mode of ['sync', 'async'] as const) runs[mode].push(await measure(mode, stall[mode]));
    const best = (mode: Mode, k: keyof Result, higher: boolean) => {
      const xs = runs[mode].map((x) => x[k]);
      return higher ? Math.max(...xs) : Math.min(...xs);
    };
    const eps = { sync: best('sync', 'examplesPerSec', true), async: best('async', 'examplesPerSec', true) };
    const t97 = { sync: best('sync', 'timeTo97', false), async: best('async', 'timeTo97', false) };
    const detail = (m: Mode) =>
      `${m}: stall ${stall[m].toFixed(1)} ms per batch of tower ${SLOWED}, last accuracy ${runs[m].map((x) => x.accuracy).join('/')}` +
      (m === 'async' ? `, slowed tower's share of examples ${runs[m].map((x) => (100 * x.slowedShare).toFixed(1)).join('/')}%` : '');
    const note = `${REPS} rep(s), best; ${detail('sync')}; ${detail('async')}`;
    return [
      { name: 'async s=4 examples/sec, 1 of 3 towers 3x slower', value: eps.async, unit: 'ex/s', reference: { value: eps.sync, label: 'sync, same towers' }, ratio: eps.async / eps.sync, note },
      {
        name: 'async s=4 time to 97% test accuracy',
        value: t97.async,
        unit: 's',
        reference: { value: t97.sync, label: 'sync, same towers' },
        ...(Number.isFinite(t97.async) && Number.isFinite(t97.sync) ? { ratio: t97.sync / t97.async } : {}),
      },
    ];
  },
};
