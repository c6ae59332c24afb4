// One process of an asynchronous run across processes (test/async-processes.test.ts): the server (rank 0) or a
// worker, as TOWERLINE_ASYNC_ROLE and the group's TOWERLINE_* variables say; one JSON line per event on stdout
// ('ready', 'step' every 10 updates, 'dropped', 'done', 'error').
// Usage: node --import tsx test/support/async-child.ts '<json AsyncChildArgs>'
import { createRuntime, mnist, type Runtime } from '../../src/runtime.js';
import { mnistMlp } from '../../src/model/spec.js';

export interface AsyncChildArgs {
  devices: string;
  hidden: number;
  epochs?: number;
  steps?: number;
  lr: number;
  decay?: number;
}

const args = JSON.parse(process.argv[2]!) as AsyncChildArgs;
const emit = (event: string, data: Record<string, unknown> = {}) => process.stdout.write(JSON.stringify({ event, at: Date.now(), ...data }) + '\n');

async function main(): Promise<number> {
  let rt: Runtime | undefined;
  try {
    rt = await createRuntime({ devices: args.devices });
    emit('ready');
    const lr = args.decay ? { type: 'exponential' as const, lr: args.lr, decayRate: args.decay, decaySteps: 937, staircase: true } : args.lr;
    const run = rt.train({
      mode: 'async',
      model: mnistMlp(args.hidden),
      optimizer: { type: 'momentum', lr, momentum: 0.9 },
      data: mnist({ batchSize: 64 }),
      ...(args.epochs !== undefined ? { epochs: args.epochs } : { steps: args.steps! }),
      seed: 4,
      evaluate: args.epochs !== undefined,
    });
    run.steps$.subscribe((e) => e.step % 10 === 0 && emit('step', { step: e.step, tower: e.async?.device }));
    run.events$.subscribe((e) => e.type === 'towerDropped' && emit('dropped', { device: e.device, reason: e.reason, step: e.step }));
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
