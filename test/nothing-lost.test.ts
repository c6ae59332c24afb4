// Nothing lost, nothing silently wrong (issue 13): every case in docs/nothing-lost.md, tried as a careless user
// would. CLI cases run the real CLI as a child process. Each case returns the text its row's excerpt must be in
// (the error, a warning, or how the run ended) and asserts by itself that nothing was lost: the checkpoint written
// before the fault still loads, and no run reports success for work it did not keep.
import assert from 'node:assert/strict';
import { copyFile, mkdir, mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { createRuntime, mnist, type RunEvent, type RuntimeOptions } from '../src/runtime.js';
import { mnistMlp } from '../src/model/spec.js';
import { loadCheckpoint } from '../src/io/checkpoint.js';
import type { Schedule } from '../src/scheduler/schedule.js';
import { ringSchedule } from '../src/scheduler/ring.js';
import { BIN, towerline, type Proc } from './support/cli.js';
import { screen } from './support/screen.js';
import { sameBits } from './support/runtime.js';
import { describeTable } from './support/doc-table.js';

const base = await mkdtemp(join(tmpdir(), 'tl-nothing-lost-'));
let dirs = 0;
const fresh = () => join(base, `d${dirs++}`);
const T = ['train', '--devices', 'cpu*2', '--batch-size', '32', '--log-every', '1'];
const all = (p: Proc) => `${p.out}\n${p.err}\nexit code ${p.code ?? p.signal}`;

/** A finished 3-step CLI run's checkpoint directory (made once, copied by the cases that need one). */
let made: string | undefined;
async function finishedRun(): Promise<string> {
  if (!made) {
    made = fresh();
    const r = await towerline([...T, '--steps', '3', '--checkpoint-dir', made]);
    assert.equal(r.code, 0, r.err);
  }
  const dir = fresh();
  await mkdir(dir);
  for (const f of await readdir(made)) await copyFile(join(made, f), join(dir, f));
  return dir;
}

/** The CLI failed before step 1 with a non-zero exit and claimed nothing. */
function failedUpFront(r: Proc): string {
  assert.notEqual(r.code, 0, 'a bad input must not exit 0');
  assert.doesNotMatch(r.out, /^step 1,/m, 'no step may run before the input is checked');
  assert.doesNotMatch(r.out, /^done:/m);
  // Errors speak in the CLI's flags: no API wording, no stack trace.
  assert.doesNotMatch(r.err, /rt\.train\(|createRuntime\(|lastBatch|train options\.|runtime options\.|^\s+at .*:\d+:\d+\)?$/m, r.err);
  return all(r);
}

async function stepOf(dir: string): Promise<number> {
  return (await loadCheckpoint(dir)).step;
}

/** A CLI run stopped by `signal` after step 5: it checkpoints, exits 128+n and never says "done". */
async function stopWith(signal: NodeJS.Signals, code: number): Promise<string> {
  const dir = fresh();
  const r = await towerline([...T, '--steps', '100000', '--checkpoint-dir', dir], (line, child) => {
    if (/^step 5,/.test(line)) child.kill(signal);
  });
  assert.equal(r.code, code, r.err);
  assert.doesNotMatch(r.out, /^done:/m);
  const step = await stepOf(dir);
  assert.ok(step >= 5 && step < 1000, `checkpoint at step ${step}`);
  assert.match(r.out, new RegExp(`^checkpoint at step ${step}:`, 'm'));
  assert.match(r.out, new RegExp(`^stopped \\(${signal}\\) after ${step} steps`, 'm'));
  return all(r);
}

const optimizer = { type: 'sgd' as const, lr: 0.1 };
const model = mnistMlp(16);

async function errorOf(f: () => unknown): Promise<string> {
  try {
    await f();
  } catch (e) {
    return (e as Error).message;
  }
  assert.fail('expected an error, none was thrown');
}

/** Trains `steps` on a fresh runtime; returns tower 0's weights and the events. */
async function trainAlone(devices: string, steps: number, extra: Record<string, unknown> = {}, options: Partial<RuntimeOptions> = {}): Promise<{ weights: Map<string, Float32Array>; events: RunEvent[] }> {
  const rt = await createRuntime({ devices, layout: { extraTowers: 'threads' }, ...options });
  try {
    const run = rt.train({ model, optimizer, data: mnist({ batchSize: 32 }), steps, seed: 3, ...extra });
    const events: RunEvent[] = [];
    run.events$.subscribe((e) => events.push(e));
    await run.done;
    return { weights: (await rt.readWeights())[0]!, events };
  } finally {
    await rt.close();
  }
}

/** A directory with checkpoints at steps 2 and 4 of one API run. */
async function twoCheckpoints(): Promise<string> {
  const dir = fresh();
  await trainAlone('cpu*2', 4, { checkpoint: { dir, everySteps: 2, keep: 5 } });
  return dir;
}

/** Resumes `dir` to step 6; returns the warnings and the step it resumed from. */
async function resumeWarnings(dir: string): Promise<{ warnings: string; from: number }> {
  const { events } = await trainAlone('cpu*2', 6, { checkpoint: { dir, everySteps: 2, keep: 5, resume: true } });
  const resumed = events.find((e) => e.type === 'resumed');
  assert.ok(resumed && resumed.type === 'resumed');
  return { warnings: events.flatMap((e) => (e.type === 'warning' ? [e.message] : [])).join('\n'), from: resumed.step };
}

const CASES: Record<string, () => Promise<string>> = {
  'cli-checkpoint-dir-is-file': async () => {
    const file = join(base, 'a-file');
    await writeFile(file, 'mine');
    const r = failedUpFront(await towerline([...T, '--steps', '3', '--checkpoint-dir', file]));
    assert.equal(await readFile(file, 'utf8'), 'mine', 'the file in the way is untouched');
    return r;
  },
  'cli-checkpoint-dir-unwritable': async () => failedUpFront(await towerline([...T, '--steps', '3', '--checkpoint-dir', '/sys/towerline-ckpt'])),
  'cli-trace-unwritable': async () => failedUpFront(await towerline([...T, '--steps', '3', '--trace', '/sys/towerline-trace/t.json'])),
  'cli-log-dir-is-file': async () => {
    const file = join(base, 'b-file');
    await writeFile(file, 'mine');
    return failedUpFront(await towerline([...T, '--steps', '3', '--log-dir', file]));
  },
  'cli-fresh-run-into-another-runs-dir': async () => {
    const dir = await finishedRun();
    const r = failedUpFront(await towerline([...T, '--steps', '2', '--checkpoint-dir', dir]));
    assert.equal(await stepOf(dir), 3, "the other run's checkpoint still loads");
    return r;
  },
  'cli-overwrite-higher-numbered': async () => {
    const dir = await finishedRun(); // another run's checkpoint at step 3, higher than this run will reach
    const r = await towerline([...T, '--steps', '2', '--checkpoint-every', '1', '--checkpoint-dir', dir, '--overwrite-checkpoints']);
    assert.equal(r.code, 0, r.err);
    const ck = await loadCheckpoint(dir);
    assert.equal(ck.step, 2, "this run's newest checkpoint is kept; the other run's step 3 is gone");
    assert.deepEqual((await readdir(dir)).filter((f) => f.endsWith('.json')).sort(), ['ckpt-000000001.json', 'ckpt-000000002.json']);
    return all(r);
  },
  'cli-resume-empty-dir': async () => {
    const dir = fresh();
    await mkdir(dir);
    return failedUpFront(await towerline([...T, '--steps', '3', '--checkpoint-dir', dir, '--resume']));
  },
  'cli-resume-missing-dir': async () => failedUpFront(await towerline([...T, '--steps', '3', '--checkpoint-dir', fresh(), '--resume'])),
  'cli-resume-all-corrupt': async () => {
    const dir = await finishedRun();
    const w = join(dir, 'ckpt-000000003.safetensors');
    const bytes = await readFile(w);
    bytes[bytes.length - 1]! ^= 1;
    await writeFile(w, bytes);
    const r = failedUpFront(await towerline([...T, '--steps', '6', '--checkpoint-dir', dir, '--resume']));
    assert.ok((await readdir(dir)).includes('ckpt-000000003.json'), 'the damaged checkpoint is left for inspection');
    return r;
  },
  'cli-resume-if-present-empty': async () => {
    const dir = fresh();
    const r = await towerline([...T, '--steps', '2', '--checkpoint-dir', dir, '--resume-if-present']);
    assert.equal(r.code, 0, r.err);
    assert.equal(await stepOf(dir), 2);
    return all(r);
  },
  'cli-sigterm': () => stopWith('SIGTERM', 143),
  'cli-sighup': () => stopWith('SIGHUP', 129),
  'cli-closed-stdout': async () => {
    const dir = fresh();
    const r = await towerline([...T, '--steps', '100000', '--checkpoint-dir', dir], (line, child) => {
      if (/^step 1,/.test(line)) child.closeStdout(); // `towerline train ... | head -1`
    });
    assert.equal(r.code, 141, r.err);
    assert.doesNotMatch(r.err, /EPIPE|Unhandled|at .*\.ts:\d+/, 'ends quietly');
    const step = await stepOf(dir);
    assert.ok(step >= 1 && step < 1000);
    return all(r);
  },
  'cli-final-checkpoint-once': async () => {
    const dir = fresh();
    const r = await towerline([...T, '--steps', '4', '--checkpoint-every', '2', '--checkpoint-dir', dir]);
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out.match(/^checkpoint at step 4:/gm)?.length, 1, 'step 4 is written once');
    assert.equal(await stepOf(dir), 4);
    return all(r);
  },
  'cli-settings-mismatch': async () => {
    const dir = await finishedRun();
    const r = failedUpFront(await towerline([...T, '--steps', '6', '--lr', '0.2', '--checkpoint-dir', dir, '--resume']));
    assert.equal(await stepOf(dir), 3);
    return r;
  },
  'cli-resume-other-devices': async () => {
    const dir = await finishedRun();
    const r = await towerline([...T, '--devices', 'cpu*3', '--extra-towers', 'threads', '--steps', '4', '--checkpoint-dir', dir, '--resume']);
    assert.equal(r.code, 0, r.err);
    assert.equal(await stepOf(dir), 4);
    return all(r);
  },
  'cli-resume-other-gemm-threads': async () => {
    const dir = await finishedRun();
    const r = await towerline([...T, '--gemm-threads', '3', '--steps', '4', '--checkpoint-dir', dir, '--resume']);
    assert.equal(r.code, 0, r.err);
    return all(r);
  },
  'cli-devices-huge': async () => failedUpFront(await towerline([...T, '--steps', '3', '--devices', 'cpu*99999999'])),
  'cli-devices-200': async () => failedUpFront(await towerline([...T, '--steps', '3', '--devices', 'cpu*200'])),
  'cli-batch-larger-than-data': async () => failedUpFront(await towerline([...T, '--steps', '3', '--batch-size', '100000'])),
  'cli-lr-nan': async () => {
    const r = failedUpFront(await towerline([...T, '--steps', '3', '--lr', 'NaN']));
    assert.ok(r.split('\n').filter((l) => l.trim()).length <= 4, `no screen of help after the error:\n${r}`);
    return r;
  },
  'cli-data-dir-missing': async () => failedUpFront(await towerline([...T, '--steps', '3', '--data-dir', join(base, 'no-such-dir')])),
  'cli-terminal-bar': async () => {
    // On a terminal (script(1) gives the CLI a pseudo-terminal): every message stays readable above the bar.
    const dir = fresh();
    const cmd = [process.execPath, BIN, ...T, '--steps', '6', '--checkpoint-every', '2', '--checkpoint-dir', dir].map((a) => `'${a}'`).join(' ');
    const raw = await new Promise<string>((resolve, reject) =>
      execFile('script', ['-qfec', cmd, '/dev/null'], { env: { ...process.env, COLUMNS: '120', LINES: '40' } }, (e, out) => (e ? reject(e) : resolve(out))),
    );
    const shown = screen(raw);
    for (const re of [/^checkpoint at step 2: /, /^checkpoint at step 4: /, /^checkpoint at step 6: /, /^done: 6 steps, final loss /, /^step 6\/6 \[/])
      assert.ok(shown.some((l) => re.test(l)), `the terminal does not show ${re}:\n${shown.join('\n')}`);
    assert.equal(await stepOf(dir), 6);
    return shown.join('\n');
  },
  'cli-version': async () => {
    const r = await towerline(['--version']);
    assert.equal(r.code, 0);
    const pkg = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
    assert.equal(r.out.trim(), pkg.version);
    return `prints the package's version (${pkg.version})`;
  },
  'api-lr-nan': () => errorOf(async () => (await trainAlone('cpu:0', 1, { optimizer: { type: 'sgd', lr: NaN } })).weights),
  'api-chunk-elems-tiny': () =>
    errorOf(async () => {
      const rt = await createRuntime({ devices: 'cpu*2' });
      try {
        rt.setReduction({ algorithm: 'ring', chunkElems: 1 });
        await rt.train({ model, optimizer, data: mnist({ batchSize: 32 }), steps: 1 }).done;
      } finally {
        await rt.close();
      }
    }),
  'api-batch-larger-than-data-keep': () => errorOf(() => trainAlone('cpu*2', 1, { data: mnist({ batchSize: 70_000, lastBatch: 'keep' }) })),
  'api-memory-bound': () => errorOf(() => trainAlone('cpu:0', 1, { model: { input: { shape: [784] }, layers: [{ type: 'dense', units: 1 << 22 }, { type: 'dense', units: 10 }] } })),
  'api-close-in-flight': async () => {
    const rt = await createRuntime({ devices: 'cpu*2' });
    const run = rt.train({ model, optimizer, data: mnist({ batchSize: 32 }), steps: 100_000 });
    run.steps$.subscribe((e) => {
      if (e.step === 3) void rt.close();
    });
    const message = await errorOf(() => run.done);
    await rt.close();
    return message;
  },
  'api-corrupt-latest-weights': async () => {
    const dir = await twoCheckpoints();
    const w = join(dir, 'ckpt-000000004.safetensors');
    const bytes = await readFile(w);
    bytes[bytes.length - 5]! ^= 0x40; // same size, one flipped bit in the weights
    await writeFile(w, bytes);
    const { warnings, from } = await resumeWarnings(dir);
    assert.equal(from, 2, 'falls back to the newest good checkpoint');
    return warnings;
  },
  'api-edited-sidecar-position': async () => {
    const dir = await twoCheckpoints();
    const s = join(dir, 'ckpt-000000004.json');
    const sc = JSON.parse(await readFile(s, 'utf8')) as { state: { next: { batch: number } } };
    sc.state.next.batch += 7; // the data position: no weight byte changes, but the trajectory would
    await writeFile(s, JSON.stringify(sc));
    const { warnings, from } = await resumeWarnings(dir);
    assert.equal(from, 2);
    return warnings;
  },
  'api-schedule-mutated-after-accept': async () => {
    // Each planned schedule shows the ring on the runtime's first read of its phases, and the ring without tower 1's
    // steps on every later read: a runtime that reads the strategy's object again (to validate, compile or run it)
    // instead of its own copy from the first read would see the edit.
    let reads = 0;
    const edited = (req: Parameters<typeof ringSchedule>[0]): Schedule => {
      const ring = ringSchedule(req);
      const dropped = ring.phases.map((phase) => phase.map((moves, r) => (r === 1 ? [] : moves)));
      let first = true;
      return {
        name: ring.name,
        get phases() {
          reads++;
          const p = first ? ring.phases : dropped;
          first = false;
          return p;
        },
      };
    };
    const strategy = { name: 'my-ring', plan: edited };
    const rt = await createRuntime({ devices: 'cpu*2', reduction: { algorithm: 'ring' } });
    let weights: Map<string, Float32Array>;
    try {
      rt.setReduction({ custom: strategy });
      await rt.train({ model, optimizer, data: mnist({ batchSize: 32 }), steps: 4, seed: 3 }).done;
      const report = await rt.checkReplicas();
      assert.ok(report.consistent);
      weights = (await rt.readWeights())[0]!;
    } finally {
      await rt.close();
    }
    assert.ok(reads >= 1, 'the strategy planned');
    // The reference runs the built-in ring, as the accepted copy does: with no strategy chosen, 2 CPU towers would
    // take the sharded update, whose formed dW need not match the ring's bits (Note [Shared gradients]).
    const alone = await trainAlone('cpu*2', 4, {}, { reduction: { algorithm: 'ring' } });
    for (const [name, w] of alone.weights) assert.ok(sameBits(w, weights.get(name)!), `${name}: the accepted copy ran, not the edited schedule`);
    return 'the run used the schedule as accepted';
  },
  'api-state-reads-from-subscriber': async () => {
    const rt = await createRuntime({ devices: 'cpu*3', layout: { extraTowers: 'threads' } });
    try {
      const run = rt.train({ model, optimizer, data: mnist({ batchSize: 48 }), steps: 30 });
      const reads: Array<Promise<string>> = [];
      run.steps$.subscribe(() => {
        reads.push(rt.checkReplicas().then((r) => (r.consistent ? 'ok' : `mismatch: ${JSON.stringify(r)}`)));
        reads.push(
          rt.readWeights().then((ws) => {
            for (const w of ws.slice(1)) for (const [name, t] of ws[0]!) if (!sameBits(t, w.get(name)!)) return `weights differ across towers in ${name}`;
            return 'ok';
          }),
        );
      });
      await run.done;
      const got = await Promise.all(reads);
      assert.equal(got.length, 60);
      assert.deepEqual(got.filter((g) => g !== 'ok'), []);
      return `${got.length} reads from a steps$ subscriber, all consistent`;
    } finally {
      await rt.close();
    }
  },
};

describeTable('nothing lost, nothing silently wrong (docs/nothing-lost.md)', 'nothing-lost.md', CASES);
