// One process of an asynchronous run across processes (test/async-processes.test.ts): the server (rank 0) or a
// worker, as TOWERLINE_ASYNC_ROLE and the group's TOWERLINE_* variables say; one JSON line per event on stdout
// ('ready', 'step' every 10 updates or every one, 'dropped', 'resumed', 'checkpoint', 'evaluation', 'done', 'error').
// Usage: node --import tsx test/support/async-child.ts '<json AsyncChildArgs>'
import { createRuntime, mnist, type Runtime } from '../../src/runtime.js';
import { injectFaults } from '../../src/testing/faults.js';
import { mnistMlp } from '../../src/model/spec.js';

export interface AsyncChildArgs {
  devices: string;
  hidden: number;
  epochs?: number;
  steps?: number;
  lr: number;
  decay?: number;
  batchSize?: number;
  clipNorm?: number;
  emaDecay?: number;
  maxStaleness?: number;
  checkpoint?: { dir: string; everySteps?: number; resume?: boolean };
  /** A 'step' event for every update (else every 10th). */
  everyStep?: boolean;
  /** A worker: a NaN into its tower 0's gradient (element 5) at this step (batch number + 1). */
  nanAt?: number;
  nonFinite?: 'halt' | 'skip';
}

const args = JSON.parse(process.argv[2]!) as AsyncChildArgs;
const emit = (event: string, data: Record<string, unknown> = {}) => process.stdout.write(JSON.stringify({ event, at: Date.now(), ...data }) + '\n');

async function main(): Promise<number> {
  let rt: Runtime | undefined;
  try {
    rt = await createRuntime({ devices: args.devices });
    emit('ready');
    const nanAt = args.nanAt;
    if (nanAt !== undefined && process.env.TOWERLINE_ASYNC_ROLE === 'worker')
      injectFaults(rt, (step, rank) => (step === nanAt && rank === 0 ? { at: 'gradient', kind: 'nan', index: 5 } : undefined));
    const lr = args.decay ? { type: 'exponential' as const, lr: args.lr, decayRate: args.decay, decaySteps: 937, staircase: true } : args.lr;
    const run = rt.train({
      mode: 'async',
      model: mnistMlp(args.hidden),
      optimizer: { type: 'momentum', lr, momentum: 0.9 },
      data: mnist({ batchSize: args.batchSize ?? 64 }),
      ...(args.clipNorm !== undefined ? { clipNorm: args.clipNorm } : {}),
      ...(args.emaDecay !== undefined ? { emaDecay: args.emaDecay } : {}),
      ...(args.maxStaleness !== undefined ? { maxStaleness: args.maxStaleness } : {}),
      ...(args.checkpoint ? { checkpoint: args.checkpoint } : {}),
      ...(args.nonFinite ? { guard: { nonFinite: args.nonFinite } } : {}),
      ...(args.epochs !== undefined ? { epochs: args.epochs } : { steps: args.steps! }),
      seed: 4,
      evaluate: args.epochs !== undefined,
    });
    run.steps$.subscribe(
      (e) => (args.everyStep || e.step % 10 === 0) && emit('step', { step: e.step, tower: e.async?.device, loss: e.loss, gradientNorm: e.gradientNorm, staleness: e.async?.staleness }),
    );
    run.events$.subscribe((e) => {
      if (e.type === 'towerDropped') emit('dropped', { device: e.device, reason: e.reason, step: e.step });
      if (e.type === 'resumed' || e.type === 'checkpoint') emit(e.type, { step: e.step, path: e.path });
      if (e.type === 'skipped') emit('skipped', { step: e.step, reason: e.reason });
      if (e.type === 'evaluation') emit('evaluation', { step: e.step, loss: e.loss, accuracy: e.accuracy, useEma: e.useEma });
    });
    const s = await run.done;
    emit('done', { steps: s.steps, accuracy: s.evaluation?.accuracy });
    return 0;
  } catch (e) {
    emit('error', { message: (e as Error).message });
    return 1;
  } finally {
    await rt?.close();
  }
}

process.exitCode = await main();
