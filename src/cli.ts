// The towerline command line: train, eval, topo, bench allreduce.
import { Command, InvalidArgumentError, Option } from 'commander';
import cliProgress from 'cli-progress';
import { readFile } from 'node:fs/promises';
import { createRuntime } from './runtime.js';
import type { StepEvent } from './events.js';
import { blockNetwork, cifar10Cnn, mnistMlp } from './model/spec.js';
import { blocks, cifar10, mnist, type DataInput } from './data/inputs.js';
import type { LearningRate, ModelSpec, OptimizerSpec } from './spec-types.js';
import { parseTrainOptions, runSettingsSchema } from './options.js';
import { validate } from './util/validate.js';
import { DEVICE_HELP } from './devices.js';
import { loadCheckpoint } from './io/checkpoint.js';
import { NativeDevice } from './backend/native-device.js';
import { Tower } from './model/tower.js';
import { loadMnist } from './data/mnist.js';
import { registerLaunch } from './cli/launch.js';
import { groupRequested } from './group/options.js';

const int = (name: string) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`${name} must be a non-negative integer, got '${v}'`);
  return n;
};
const num = (name: string) => (v: string) => {
  const n = Number(v);
  if (!Number.isFinite(n)) throw new InvalidArgumentError(`${name} must be a number, got '${v}'`);
  return n;
};

const PRESETS: Record<string, () => ModelSpec> = { mnist: () => mnistMlp(), cifar10: () => cifar10Cnn(), blocks: () => blockNetwork() };

/** A preset, or a JSON spec file (validated with the train options, once). */
async function loadModel(model: string): Promise<unknown> {
  const preset = PRESETS[model];
  if (preset) return preset();
  try {
    return JSON.parse(await readFile(model, 'utf8'));
  } catch (e) {
    throw new Error(`--model: '${model}' is neither a preset (${Object.keys(PRESETS).join(', ')}) nor a readable JSON spec file: ${(e as Error).message}`);
  }
}

/** The data set for `--dataset` (default: the one that goes with a preset model, else mnist). */
function dataInput(f: TrainFlags): DataInput {
  const name = f.dataset ?? (f.model === 'cifar10' || f.model === 'blocks' ? f.model : 'mnist');
  switch (name) {
    case 'mnist':
      return mnist({ batchSize: f.batchSize });
    case 'cifar10':
      // The real binary files when --data-dir is given; else the generated CIFAR-shaped set.
      return cifar10({ batchSize: f.batchSize, ...(f.dataDir ? { dir: f.dataDir } : {}) });
    case 'blocks':
      return blocks({ batchSize: f.batchSize });
    default:
      throw new Error(`--dataset: unknown data set '${name}'; use mnist, cifar10 or blocks`);
  }
}

/** The seeds' familiar line: `step 100, loss = 0.35 (12345.6 examples/sec; 0.010 sec/batch)`. */
export function stepLine(e: StepEvent): string {
  return `step ${e.step}, loss = ${e.loss.toFixed(2)} (${e.examplesPerSec.toFixed(1)} examples/sec; ${e.secPerBatch.toFixed(3)} sec/batch)`;
}

interface TrainFlags {
  model: string;
  dataset?: string;
  dataDir?: string;
  devices: string;
  reduction: 'auto' | 'ring' | 'tree' | 'naive';
  overlap?: boolean; // --overlap, --bucket-mb: the all-reduce overlapped with backward (Note [Overlapped all-reduce])
  bucketMb?: number;
  batchSize: number;
  epochs?: number;
  steps?: number;
  optimizer: 'sgd' | 'momentum' | 'adam';
  lr: number;
  momentum: number;
  decayRate?: number;
  decaySteps?: number;
  staircase?: boolean;
  ema?: number;
  clipNorm?: number;
  checkpointDir?: string;
  checkpointEvery?: number;
  keep: number;
  resume?: boolean;
  logDir?: string;
  histogramsEvery?: number;
  trace?: string;
  seed: number;
  eval?: boolean;
  logPlacement?: boolean;
  logEvery: number;
}

async function train(f: TrainFlags): Promise<number> {
  if (f.epochs === undefined && f.steps === undefined) throw new Error('give --epochs or --steps');
  const lr: LearningRate =
    f.decayRate !== undefined ? { type: 'exponential', lr: f.lr, decayRate: f.decayRate, decaySteps: f.decaySteps ?? 1000, staircase: f.staircase ?? false } : f.lr;
  const optimizer: OptimizerSpec =
    f.optimizer === 'momentum' ? { type: 'momentum', lr, momentum: f.momentum } : f.optimizer === 'adam' ? { type: 'adam', lr } : { type: 'sgd', lr };
  // One schema for the API, the CLI and checkpoints (src/options.ts): the CLI's settings are checked here, once.
  const opts = parseTrainOptions({
    model: await loadModel(f.model),
    optimizer,
    data: dataInput(f),
    seed: f.seed,
    ...(f.overlap ? { overlap: true } : {}),
    ...(f.bucketMb !== undefined ? { bucketBytes: Math.max(4, Math.round(f.bucketMb * 2 ** 20)) } : {}),
    evaluate: f.eval ?? false,
    ...(f.epochs !== undefined ? { epochs: f.epochs } : {}),
    ...(f.steps !== undefined ? { steps: f.steps } : {}),
    ...(f.ema !== undefined ? { emaDecay: f.ema } : {}),
    ...(f.clipNorm !== undefined ? { clipNorm: f.clipNorm } : {}),
    ...(f.checkpointDir ? { checkpoint: { dir: f.checkpointDir, keep: f.keep, resume: f.resume ?? false, ...(f.checkpointEvery ? { everySteps: f.checkpointEvery } : {}) } } : {}),
    ...(f.logDir ? { logDir: f.logDir } : {}),
    ...(f.histogramsEvery ? { histogramsEvery: f.histogramsEvery } : {}),
    ...(f.trace ? { traceFile: f.trace } : {}),
  });
  const rt = await createRuntime({ devices: f.devices, reduction: { algorithm: f.reduction }, ...(groupRequested() ? { group: true } : {}) }); // under towerline launch, mpirun, srun
  const tty = process.stdout.isTTY === true;
  let stopping = false;
  let exitCode = 0;
  try {
    const run = rt.train(opts);
    const onSigint = () => {
      if (stopping) return;
      stopping = true;
      exitCode = 130;
      process.stderr.write('\nCtrl+C: stopping after the current step and writing a checkpoint...\n');
      run.stop();
    };
    process.on('SIGINT', onSigint);
    let total = f.steps ?? 0; // set by the 'started' event (epochs x steps per epoch of the data set)
    const bar = tty
      ? new cliProgress.SingleBar({ format: 'step {value}/{total} [{bar}] loss {loss} | {eps} examples/sec | ETA {eta_formatted}', hideCursor: true }, cliProgress.Presets.shades_classic)
      : undefined;
    let placementShown = false;
    run.steps$.subscribe({
      next: (e) => {
        if (f.logPlacement && !placementShown) {
          placementShown = true;
          for (const line of rt.placement()) process.stdout.write(`${line}\n`);
        }
        if (bar) {
          if (e.step === 1 || !bar.getTotal()) bar.start(total, 0, { loss: '-', eps: '-' });
          bar.update(e.step, { loss: e.loss.toFixed(3), eps: e.examplesPerSec.toFixed(0) });
        } else if (e.step % f.logEvery === 0) {
          process.stdout.write(`${stepLine(e)}\n`);
        }
      },
      complete: () => bar?.stop(),
    });
    run.events$.subscribe({
      next: (e) => {
        if (e.type === 'started') total = e.totalSteps;
        if (e.type === 'evaluation') process.stdout.write(`epoch ${e.epoch + 1}: test accuracy ${(e.accuracy * 100).toFixed(2)}%${e.useEma ? ' (EMA weights)' : ''}\n`);
        if (e.type === 'checkpoint' && !tty) process.stdout.write(`checkpoint at step ${e.step}: ${e.path}\n`);
        if (e.type === 'resumed') process.stdout.write(`resumed from ${e.path} at step ${e.step} (${e.note})\n`);
        if (e.type === 'skipped') process.stdout.write(`step ${e.step} skipped: ${e.reason}\n`);
      },
    });
    const summary = await run.done;
    process.off('SIGINT', onSigint);
    process.stdout.write(`done: ${summary.steps} steps, final loss ${summary.finalLoss.toFixed(4)}${summary.evaluation ? `, test accuracy ${(summary.evaluation.accuracy * 100).toFixed(2)}%` : ''}\n`);
  } finally {
    await rt.close();
  }
  return exitCode;
}

async function evaluate(f: { checkpoint: string; ema?: boolean }): Promise<number> {
  const ck = await loadCheckpoint(f.checkpoint);
  const settings = validate(runSettingsSchema, ck.state.settings, `${ck.path}: run settings`);
  const dev = NativeDevice.open('cpu', 0);
  try {
    const tower = new Tower(dev, settings.model, { maxBatch: 1000, training: { optimizer: settings.optimizer, ...(settings.emaDecay !== undefined ? { emaDecay: settings.emaDecay } : {}) } });
    tower.writeState(new Map([...ck.tensors].map(([k, t]) => [k, t.data])));
    const test = await loadMnist('test');
    const ds = tower.uploadDataset(test.images, test.labels, test.count);
    const r = await tower.evaluate(ds, { useEma: f.ema ?? false });
    process.stdout.write(`checkpoint ${ck.path} (step ${ck.step}): test loss ${r.loss.toFixed(4)}, accuracy ${(r.accuracy * 100).toFixed(2)}% on ${r.count} examples${f.ema ? ' (EMA weights)' : ''}\n`);
    tower.dispose();
  } finally {
    await dev.close();
  }
  return 0;
}

export function buildCli(): Command {
  const program = new Command('towerline').description('Data-parallel training in Node.js: one tower per device, kept in lock-step.').showHelpAfterError();
  program
    .command('train')
    .description('train a model (MNIST by default) on one or more towers')
    .option('--model <preset|file>', "model preset ('mnist', 'cifar10', 'blocks') or a JSON model spec file", 'mnist')
    .option('--dataset <name>', "data set: 'mnist', 'cifar10' (files from --data-dir, else generated) or 'blocks' (default: the preset's)")
    .option('--data-dir <dir>', 'folder with the data set files (CIFAR-10: cifar-10-batches-bin)')
    .option('--devices <list>', `devices, one tower each. ${DEVICE_HELP}`, 'cpu:0')
    .addOption(new Option('--reduction <algorithm>', 'all-reduce algorithm').choices(['auto', 'ring', 'tree', 'naive']).default('auto'))
    .option('--overlap', 'overlap the gradient all-reduce with backward, bucket by bucket (pays across machines; docs/multi-process.md)')
    .option('--bucket-mb <mib>', 'with --overlap: the cap of one gradient bucket in MiB (default 1)', num('--bucket-mb'))
    .option('--batch-size <n>', 'global batch size (split over the towers)', int('--batch-size'), 128)
    .option('--epochs <n>', 'epochs to train', int('--epochs'))
    .option('--steps <n>', 'steps to train (total, counting resumed ones)', int('--steps'))
    .addOption(new Option('--optimizer <name>', 'optimizer').choices(['sgd', 'momentum', 'adam']).default('momentum'))
    .option('--lr <x>', 'learning rate', num('--lr'), 0.1)
    .option('--momentum <x>', 'momentum', num('--momentum'), 0.9)
    .option('--decay-rate <x>', 'exponential learning-rate decay rate', num('--decay-rate'))
    .option('--decay-steps <n>', 'steps per decay period', int('--decay-steps'))
    .option('--staircase', 'decay in whole periods')
    .option('--ema <decay>', 'keep a moving average of the weights', num('--ema'))
    .option('--clip-norm <x>', 'clip gradients by global norm', num('--clip-norm'))
    .option('--checkpoint-dir <dir>', 'write checkpoints here (at the end, on Ctrl+C, and every --checkpoint-every steps)')
    .option('--checkpoint-every <n>', 'checkpoint every n steps', int('--checkpoint-every'))
    .option('--keep <k>', 'checkpoints to keep', int('--keep'), 3)
    .option('--resume', 'resume from the latest checkpoint in --checkpoint-dir (exact trajectory)')
    .option('--log-dir <dir>', 'TensorBoard event files')
    .option('--histograms-every <n>', 'also write weight histograms every n steps', int('--histograms-every'))
    .option('--trace <file>', 'Chrome trace-event timeline (Perfetto, chrome://tracing)')
    .option('--seed <n>', 'seed for initialisation and data order', int('--seed'), 0)
    .option('--eval', 'evaluate on the test set after each epoch')
    .option('--log-placement', 'print where every weight and kernel lives, per tower')
    .option('--log-every <n>', 'print a line every n steps when not on a terminal', int('--log-every'), 100)
    .action(async (f: TrainFlags) => {
      process.exitCode = await train(f);
    });
  program
    .command('eval')
    .description('evaluate a checkpoint on the MNIST test set')
    .requiredOption('--checkpoint <path>', 'checkpoint directory, sidecar .json or weights .safetensors')
    .option('--ema', 'use the EMA weights')
    .action(async (f: { checkpoint: string; ema?: boolean }) => {
      process.exitCode = await evaluate(f);
    });
  program
    .command('topo')
    .description('print the devices and the links between them')
    .action(async () => {
      const { topology, formatTopology } = await import('./topology.js');
      process.stdout.write(`${formatTopology(topology())}\n`);
    });
  program
    .command('bench')
    .description('benchmarks')
    .command('allreduce')
    .description('all-reduce bus bandwidth per algorithm (nccl-tests style)')
    .option('--towers <n>', 'CPU towers', int('--towers'), 4)
    .option('--max-bytes <n>', 'largest message', int('--max-bytes'), 64 << 20)
    .action(async (f: { towers: number; maxBytes: number }) => {
      const { allreduceTable } = await import('./collective-bench.js');
      process.stdout.write(await allreduceTable(f.towers, f.maxBytes));
    });
  registerLaunch(program); // towerline launch (src/cli/launch.ts)
  return program;
}

export async function main(argv: string[]): Promise<void> {
  try {
    await buildCli().parseAsync(argv);
  } catch (e) {
    process.stderr.write(`towerline: ${(e as Error).message}\n`);
    process.exitCode = process.exitCode || 1;
  }
}
