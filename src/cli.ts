// The towerline command line: train, eval, topo, bench allreduce.
import { Command, InvalidArgumentError, Option } from 'commander';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createRuntime } from './runtime.js';
import type { StepEvent } from './events.js';
import { blockNetwork, cifar10Cnn, mnistMlp } from './model/spec.js';
import { blocks, cifar10, mnist, type DataInput } from './data/inputs.js';
import type { LearningRate, ModelSpec, OptimizerSpec } from './spec-types.js';
import { parseTrainOptions, runSettingsSchema } from './options.js';
import { validate } from './util/validate.js';
import { DEFAULT_MAX_TOWERS, DEVICE_HELP } from './devices.js';
import { loadCheckpoint } from './io/checkpoint.js';
import { CliOutput } from './cli/output.js';
import { cliMessage } from './cli/flags.js';
import { exitCodeOf, onStopSignals } from './cli/stop.js';
import { NativeDevice } from './backend/native-device.js';
import { Tower } from './model/tower.js';
import { loadMnist, MNIST_FILES } from './data/mnist.js';
import { registerLaunch } from './cli/launch.js';
import { groupRequested } from './group/options.js';
import { asyncAcrossProcesses, asyncFlags } from './async/cli-flags.js';
import type { LayoutOptions } from './tower-port/layout.js';

const int = (name: string) => (v: string) => {
  const n = Number(v);
  if (v.trim() === '' || !Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError(`${name} expects a non-negative integer, given '${v}'`);
  return n;
};
const num = (name: string) => (v: string) => {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n)) throw new InvalidArgumentError(`${name} expects a finite number, given '${v}'`);
  return n;
};

/** A usage error of the command line itself (a missing or conflicting flag). */
class UsageError extends Error {}

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

/** The data set for `--dataset` (default: the one that goes with a preset model, else mnist), from --data-dir when given. */
function dataInput(f: TrainFlags): DataInput {
  const name = f.dataset ?? (f.model === 'cifar10' || f.model === 'blocks' ? f.model : 'mnist');
  if (f.dataDir && !statSync(f.dataDir, { throwIfNoEntry: false })?.isDirectory())
    throw new UsageError(`--data-dir: '${f.dataDir}' is not a directory; give the folder that holds the ${name} files`);
  const dir = f.dataDir ? { dir: f.dataDir } : {};
  if (f.dataDir && name === 'mnist') {
    const want = Object.values(MNIST_FILES).flatMap((x) => [x.images, x.labels]);
    const missing = want.filter((n) => ![n, `${n}.gz`].some((c) => existsSync(join(f.dataDir!, c))));
    if (missing.length > 0)
      throw new UsageError(`--data-dir: '${f.dataDir}' lacks ${missing.join(', ')} (plain or .gz); give the folder that holds the four MNIST IDX files (${want.join(', ')})`);
  }
  switch (name) {
    case 'mnist':
      return mnist({ batchSize: f.batchSize, ...dir });
    case 'cifar10':
      // The real binary files when --data-dir is given; else the generated CIFAR-shaped set.
      return cifar10({ batchSize: f.batchSize, ...dir });
    case 'blocks':
      if (f.dataDir) throw new UsageError(`--data-dir: the blocks data set is generated, it reads no files; leave out --data-dir '${f.dataDir}'`);
      return blocks({ batchSize: f.batchSize });
    default:
      throw new UsageError(`--dataset: unknown data set '${name}'; use mnist, cifar10 or blocks`);
  }
}

/** Flags that only mean something with another one. */
function checkFlagPairs(f: TrainFlags): void {
  if (f.epochs === undefined && f.steps === undefined) throw new UsageError('give --epochs or --steps');
  for (const [flag, set] of [['--resume', f.resume], ['--resume-if-present', f.resumeIfPresent], ['--overwrite-checkpoints', f.overwriteCheckpoints], ['--checkpoint-every', f.checkpointEvery !== undefined]] as const)
    if (set && !f.checkpointDir) throw new UsageError(`${flag} needs --checkpoint-dir <dir>`);
  if (f.bucketMb !== undefined && !f.overlap) throw new UsageError('--bucket-mb sets the bucket size of --overlap; add --overlap or drop --bucket-mb');
  if (f.resume && f.resumeIfPresent) throw new UsageError('give --resume or --resume-if-present, not both');
  if ((f.resume || f.resumeIfPresent) && f.overwriteCheckpoints) throw new UsageError('--overwrite-checkpoints starts a fresh run; it cannot go with --resume or --resume-if-present');
}

/** The seeds' familiar line: `step 100, loss = 0.35 (12345.6 examples/sec; 0.010 sec/batch)`. */
export function stepLine(e: StepEvent): string {
  return `step ${e.step}, loss = ${e.loss.toFixed(2)} (${e.examplesPerSec.toFixed(1)} examples/sec; ${e.secPerBatch.toFixed(3)} sec/batch)`;
}

/** --extra-towers and --pin as RuntimeOptions.layout (Note [CPU layout], Note [Thread placement]). */
function layoutFlags(f: { extraTowers?: 'threads' | 'fold'; pin?: boolean }): { layout?: LayoutOptions } {
  const layout: LayoutOptions = {};
  if (f.extraTowers) layout.extraTowers = f.extraTowers;
  if (f.pin) layout.pin = true;
  return Object.keys(layout).length > 0 ? { layout } : {};
}

interface TrainFlags {
  model: string;
  dataset?: string;
  dataDir?: string;
  devices: string;
  extraTowers?: 'threads' | 'fold'; // --extra-towers: CPU towers beyond the cores (Note [CPU layout])
  pin?: boolean; // --pin: thread placement (Note [Thread placement])
  reduction: 'auto' | 'ring' | 'tree' | 'naive';
  overlap?: boolean; // --overlap, --bucket-mb: the all-reduce overlapped with backward (Note [Overlapped all-reduce])
  pipeline?: boolean; // P (issue 16): --no-pipeline, steps launched one at a time (Note [Pipelined steps])
  bucketMb?: number;
  shardUpdate?: boolean; // Z (issue 16): --shard-update, the sharded optimizer update (Note [Sharded update])
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
  resumeIfPresent?: boolean;
  overwriteCheckpoints?: boolean;
  maxTowers: number;
  gemmThreads?: number;
  logDir?: string;
  histogramsEvery?: number;
  trace?: string;
  seed: number;
  eval?: boolean;
  logPlacement?: boolean;
  logEvery: number;
  mode?: 'sync' | 'async'; // I (issue 15): the asynchronous mode's flags (src/async/cli-flags.ts)
  maxStaleness?: string;
  stalenessLr?: boolean;
}

async function train(f: TrainFlags): Promise<number> {
  checkFlagPairs(f);
  const lr: LearningRate =
    f.decayRate !== undefined ? { type: 'exponential', lr: f.lr, decayRate: f.decayRate, decaySteps: f.decaySteps ?? 1000, staircase: f.staircase ?? false } : f.lr;
  const optimizer: OptimizerSpec =
    f.optimizer === 'momentum' ? { type: 'momentum', lr, momentum: f.momentum } : f.optimizer === 'adam' ? { type: 'adam', lr } : { type: 'sgd', lr };
  const resume = f.resumeIfPresent ? 'if-present' : (f.resume ?? false);
  // One schema for the API, the CLI and checkpoints (src/options.ts): the CLI's settings are checked here, once.
  const opts = parseTrainOptions({
    model: await loadModel(f.model),
    optimizer,
    data: dataInput(f),
    seed: f.seed,
    ...(f.overlap ? { overlap: true } : {}),
    ...(f.pipeline === false ? { pipeline: false } : {}), // P (issue 16)
    ...(f.bucketMb !== undefined ? { bucketBytes: Math.max(4, Math.round(f.bucketMb * 2 ** 20)) } : {}),
    ...(f.shardUpdate !== undefined ? { shardUpdate: f.shardUpdate } : {}), // Z: --shard-update / --no-shard-update (unset: the default, Note [Sharded update])
    evaluate: f.eval ?? false,
    ...(f.epochs !== undefined ? { epochs: f.epochs } : {}),
    ...(f.steps !== undefined ? { steps: f.steps } : {}),
    ...(f.ema !== undefined ? { emaDecay: f.ema } : {}),
    ...(f.clipNorm !== undefined ? { clipNorm: f.clipNorm } : {}),
    ...(f.checkpointDir
      ? { checkpoint: { dir: f.checkpointDir, keep: f.keep, resume, overwrite: f.overwriteCheckpoints ?? false, ...(f.checkpointEvery ? { everySteps: f.checkpointEvery } : {}) } }
      : {}),
    ...(f.logDir ? { logDir: f.logDir } : {}),
    ...(f.histogramsEvery ? { histogramsEvery: f.histogramsEvery } : {}),
    ...(f.trace ? { traceFile: f.trace } : {}),
    ...asyncFlags(f),
  });
  const rt = await createRuntime({
    devices: f.devices,
    reduction: { algorithm: f.reduction },
    maxTowers: f.maxTowers,
    ...(f.gemmThreads ? { gemmThreads: f.gemmThreads } : {}),
    ...layoutFlags(f),
    ...(groupRequested() && !asyncAcrossProcesses(f) ? { group: true } : {}), // under towerline launch, mpirun, srun
  });
  let stopped: { why: string; code: number } | undefined;
  let stopRun = () => undefined as void;
  const stop = (why: string, code: number) => {
    stopped ??= { why, code };
    stopRun();
  };
  const out = new CliOutput(process.stdout.isTTY === true, () => stop('stdout closed', exitCodeOf('EPIPE')));
  const saving = f.checkpointDir ? 'writing a checkpoint' : 'no --checkpoint-dir, so nothing is saved';
  const uninstall = onStopSignals(
    (signal) => {
      stop(signal, exitCodeOf(signal));
      out.line(`${signal === 'SIGINT' ? 'Ctrl+C' : signal}: stopping after the current step, ${saving}...`, 'err');
    },
    (signal) => out.line(`${signal}: already stopping; waiting for the current step${f.checkpointDir ? ' and the checkpoint' : ''}`, 'err'),
  );
  try {
    const run = rt.train(opts);
    stopRun = () => run.stop();
    if (stopped) run.stop();
    let total = f.steps ?? 0; // set by the 'started' event (epochs x steps per epoch of the data set)
    let placementShown = false;
    run.steps$.subscribe((e) => {
      if (f.logPlacement && !placementShown) {
        placementShown = true;
        for (const line of rt.placement()) out.line(line);
      }
      out.progress(e.step, total, { loss: e.loss.toFixed(3), eps: e.examplesPerSec.toFixed(0) });
      if (!process.stdout.isTTY && e.step % f.logEvery === 0) out.line(stepLine(e));
    });
    run.events$.subscribe((e) => {
      if (e.type === 'started') total = e.totalSteps;
      if (e.type === 'started' && f.pin && e.layout) out.line(e.layout); // --pin: where each thread runs (Note [Thread placement])
      if (e.type === 'started' && e.pipeline?.off !== undefined) out.line(`steps launched one at a time (${e.pipeline.off})`); // O (issue 16)
      if (e.type === 'started' && e.optimizerBytes) out.line(`sharded update: optimizer state per tower ${e.optimizerBytes.map((b) => `${(b / 2 ** 20).toFixed(2)} MiB`).join(', ')}${e.shardMemory ? ` (${e.shardMemory})` : ''}`); // Z
      if (e.type === 'evaluation') out.line(`epoch ${e.epoch + 1}: test accuracy ${(e.accuracy * 100).toFixed(2)}%${e.useEma ? ' (EMA weights)' : ''}`);
      if (e.type === 'checkpoint') out.line(`checkpoint at step ${e.step}: ${e.path}`);
      if (e.type === 'resumed') out.line(`resumed from ${e.path} at step ${e.step} (${e.note})`);
      if (e.type === 'skipped') out.line(`step ${e.step} skipped: ${e.reason}`);
      if (e.type === 'rolledBack') out.line(`step ${e.step}: rolled back to ${e.path} (${e.reason}); learning rate x${e.lrScale}`, 'err');
      if (e.type === 'replicas' && !e.consistent) out.line(`warning: replica check at step ${e.step}: ${e.detail}`, 'err');
      if (e.type === 'warning') out.line(`warning: ${cliMessage(new Error(e.message))}`, 'err');
    });
    const summary = await run.done;
    out.finish();
    const result = `${summary.steps} steps, final loss ${summary.finalLoss.toFixed(4)}${summary.evaluation ? `, test accuracy ${(summary.evaluation.accuracy * 100).toFixed(2)}%` : ''}`;
    if (!stopped) out.line(`done: ${result}`);
    else if (out.open) out.line(`stopped (${stopped.why}) after ${result}`);
  } finally {
    out.finish();
    uninstall();
    await rt.close();
  }
  return stopped?.code ?? 0;
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
  const program = new Command('towerline')
    .description('Data-parallel training in Node.js: one tower per device, kept in lock-step.')
    .version(packageVersion(), '-V, --version', 'print the towerline version')
    .showHelpAfterError('(add --help for the options)');
  program
    .command('train')
    .description('train a model (MNIST by default) on one or more towers')
    .option('--model <preset|file>', "model preset ('mnist', 'cifar10', 'blocks') or a JSON model spec file", 'mnist')
    .option('--dataset <name>', "data set: 'mnist', 'cifar10' (files from --data-dir, else generated) or 'blocks' (default: the preset's)")
    .option('--data-dir <dir>', 'folder with the data set files (MNIST: the four IDX files; CIFAR-10: cifar-10-batches-bin)')
    .option('--devices <list>', `devices, one tower each. ${DEVICE_HELP}`, 'cpu:0')
    .option('--max-towers <n>', 'the most towers to start (each a worker thread with its own model and data)', int('--max-towers'), DEFAULT_MAX_TOWERS)
    // --extra-towers: what CPU towers beyond the cores do (Note [CPU layout]).
    .addOption(new Option('--extra-towers <mode>', "CPU towers beyond the cores: 'fold' (default in one process: one device thread per core, the batch shared over them) or 'threads' (a device thread per tower)").choices(['threads', 'fold']))
    .option('--pin', "pin CPU towers' device threads and GEMM workers to CPUs of their own, and the coordinator off them during the run (layout.pin; off by default: docs/benchmarks.md)")
    .option('--gemm-threads <n>', "GEMM threads per CPU tower (default: the cores shared by the towers; results do not depend on it)", int('--gemm-threads'))
    .addOption(new Option('--reduction <algorithm>', 'all-reduce algorithm').choices(['auto', 'ring', 'tree', 'naive']).default('auto'))
    .option('--overlap', 'overlap the gradient all-reduce with backward, bucket by bucket (pays across machines; docs/multi-process.md)')
    .option('--bucket-mb <mib>', 'with --overlap: the cap of one gradient bucket in MiB (default 1)', num('--bucket-mb'))
    .option('--shard-update', 'each tower updates only its shard of the weights and optimizer state (ZeRO-1; 2+ towers in one process; the default for two CPU towers)')
    .option('--no-shard-update', 'every tower runs the whole update (the default except for two CPU towers in one process)')
    .option('--no-pipeline', 'launch each step only after the previous one is consumed (default: pipelined; same results)') // P (issue 16)
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
    .option('--resume', 'resume from the newest valid checkpoint in --checkpoint-dir (exact trajectory); an error when there is none')
    .option('--resume-if-present', 'resume when --checkpoint-dir holds a checkpoint, else start fresh (for job schedulers)')
    .option('--overwrite-checkpoints', "start fresh even though --checkpoint-dir holds another run's checkpoints (removed after this run's first)")
    .option('--log-dir <dir>', 'TensorBoard event files')
    .option('--histograms-every <n>', 'also write weight histograms every n steps', int('--histograms-every'))
    .option('--trace <file>', 'Chrome trace-event timeline (Perfetto, chrome://tracing)')
    .option('--seed <n>', 'seed for initialisation and data order', int('--seed'), 0)
    .option('--eval', 'evaluate on the test set after each epoch')
    .option('--log-placement', 'print where every weight and kernel lives, per tower')
    .option('--log-every <n>', 'print a line every n steps when not on a terminal', int('--log-every'), 100)
    // I (issue 15): asynchronous training against a parameter server (docs/async.md)
    .option('--mode <mode>', "'sync' (one update per step from every tower) or 'async' (a parameter server applies each tower's gradient as it arrives)")
    .option('--max-staleness <s>', "async: a tower runs at most s iterations ahead of the slowest (default 4; 0: lock-step; 'unbounded')")
    .option('--staleness-lr', 'async: divide each update\'s learning rate by 1 + its lag')
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
      // Issue 16: the CPU layout a run in one process picks for 1, 2, 4 ... towers on this machine (Note [CPU layout]).
      const { describeDefaultLayout } = await import('./tower-port/layout.js');
      const { processCpus } = await import('./tower-port/coordinator-cpus.js');
      const { native } = await import('./native/addon.js');
      const cpus = { allowed: processCpus(), supported: native().affinitySupported }; // Note [Thread placement]
      const cores = (await import('node:os')).availableParallelism();
      const counts = [...new Set([1, 2, cores, 2 * cores])].sort((a, b) => a - b);
      process.stdout.write(`CPU layouts (one process; a process group gives every tower a thread):\n${counts.map((n) => `  ${describeDefaultLayout(cores, n, cpus)}`).join('\n')}\n`);
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

function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

export async function main(argv: string[]): Promise<void> {
  try {
    await buildCli().parseAsync(argv);
  } catch (e) {
    process.stderr.write(`towerline: ${cliMessage(e)}\n`);
    process.exitCode = process.exitCode || 1;
  }
}
