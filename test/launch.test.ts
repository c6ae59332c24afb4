// `towerline launch` (Note [Launcher]) driving the CLI's train in several processes: MNIST on 2 processes × 2 CPU
// towers reaches >= 98.0%; a rank SIGKILLed mid-run makes every other rank fail naming it and the launcher exit
// non-zero naming it; with --max-restarts 1 the group resumes from the last checkpoint and finishes; two launchers
// with different run tokens are refused; ranks started the way mpirun and srun start them find their ranks.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launch, launchOptionsSchema } from '../src/launch/launcher.js';
import { mnistMlp } from '../src/model/spec.js';
import { ConfigError } from '../src/errors.js';
import { tempStore } from './support/ranks.js';

const BIN = fileURLToPath(new URL('../bin/towerline.mjs', import.meta.url));
const tmp = () => mkdtempSync(join(tmpdir(), 'towerline-launch-'));

interface Out {
  lines: string[];
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** Runs `towerline <args>`; `onLine` sees every line of stdout and stderr as it comes. */
function towerline(args: string[], o: { env?: Record<string, string>; onLine?: (line: string) => void } = {}): Promise<Out> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...o.env } });
    const lines: string[] = [];
    for (const s of [child.stdout, child.stderr]) {
      let partial = '';
      s.on('data', (d: Buffer) => {
        partial += d.toString();
        const got = partial.split('\n');
        partial = got.pop()!;
        for (const l of got) {
          lines.push(l);
          o.onLine?.(l);
        }
      });
    }
    child.on('exit', (code, signal) => resolve({ lines, code, signal }));
  });
}

const rankLines = (out: Out, rank: number) => out.lines.filter((l) => l.startsWith(`[rank ${rank}] `)).map((l) => l.slice(`[rank ${rank}] `.length));
const show = (out: Out) => out.lines.slice(-40).join('\n');

describe('towerline launch', () => {
  it('MNIST 784-500-10 on 2 processes × 2 CPU towers reaches >= 98.0% test accuracy', { timeout: 600_000 }, async () => {
    const epochs = '6'; // the single-process test's schedule (lr 0.1, x0.95 per epoch); 6 epochs reach 98.1% (5 reach 98.0%)
    const out = await towerline(['launch', '--nproc-per-node', '2', '--', process.execPath, BIN, 'train', '--devices', 'cpu*2', '--batch-size', '128',
      '--epochs', epochs, '--optimizer', 'momentum', '--lr', '0.1', '--momentum', '0.9', '--decay-rate', '0.95', '--decay-steps', '468', '--staircase',
      '--seed', '4', '--eval', '--log-every', '1000']);
    assert.equal(out.code, 0, show(out));
    for (const rank of [0, 1]) {
      const done = rankLines(out, rank).find((l) => l.startsWith('done: '));
      const m = /done: (\d+) steps, final loss [\d.]+, test accuracy ([\d.]+)%/.exec(done ?? '');
      assert.ok(m, `rank ${rank} printed no summary:\n${show(out)}`);
      console.log(`# rank ${rank}: ${done}`);
      assert.equal(Number(m[1]), Number(epochs) * 468);
      assert.ok(Number(m[2]) >= 98.0, `rank ${rank}: test accuracy ${m[2]}% < 98.0%`);
    }
  });

  const small = () => {
    const dir = tmp();
    const model = join(dir, 'model.json');
    writeFileSync(model, JSON.stringify(mnistMlp(64)));
    return { dir, args: ['train', '--model', model, '--devices', 'cpu:0', '--batch-size', '96', '--steps', '120', '--lr', '0.05', '--seed', '3',
      '--checkpoint-dir', join(dir, 'ckpt'), '--checkpoint-every', '20', '--resume-if-present', '--log-every', '10'] };
  };

  /** Launches 3 ranks of `small`; SIGKILLs rank 2 once rank 0 wrote its step-40 checkpoint. */
  async function killRank2(extra: string[]): Promise<{ out: Out; killedAt: number }> {
    const s = small();
    let killedAt = 0;
    const pids = new Map<number, number>();
    try {
      const out = await towerline(['launch', '--nproc-per-node', '3', '--grace-ms', '20000', ...extra, '--', process.execPath, BIN, ...s.args], {
        env: { TOWERLINE_TIMEOUT_MS: '30000' },
        onLine: (l) => {
          const started = /^towerline launch: rank (\d+) of 3 .* started, pid (\d+)$/.exec(l);
          if (started) pids.set(Number(started[1]), Number(started[2]));
          if (killedAt === 0 && /^\[rank 0\] checkpoint at step 40:/.test(l)) {
            killedAt = Date.now();
            process.kill(pids.get(2)!, 'SIGKILL');
          }
        },
      });
      return { out, killedAt };
    } finally {
      rmSync(s.dir, { recursive: true, force: true });
    }
  }

  it('a rank SIGKILLed mid-run: every other rank fails naming it, the launcher exits non-zero naming it', { timeout: 180_000 }, async () => {
    const { out, killedAt } = await killRank2([]);
    assert.ok(killedAt > 0, `rank 2 was never killed:\n${show(out)}`);
    assert.equal(out.code, 1, show(out));
    for (const rank of [0, 1]) {
      const err = rankLines(out, rank).find((l) => l.startsWith('towerline: '));
      assert.match(err ?? '', /connection to rank 2 on host \S+ \(127\.0\.0\.1\) closed: the process died\?/, show(out));
    }
    assert.ok(out.lines.some((l) => /^towerline launch: rank 2 \(pid \d+\) was killed by SIGKILL; the run failed$/.test(l)), show(out));
    assert.ok(!out.lines.some((l) => /stopping rank/.test(l)), 'the other ranks stopped on their own, within the grace period');
  });

  it('with --max-restarts 1 the group restarts from the last checkpoint and finishes', { timeout: 240_000 }, async () => {
    const { out, killedAt } = await killRank2(['--max-restarts', '1']);
    assert.ok(killedAt > 0, `rank 2 was never killed:\n${show(out)}`);
    assert.equal(out.code, 0, show(out));
    assert.ok(out.lines.some((l) => /rank 2 \(pid \d+\) was killed by SIGKILL; restarting every rank of node 0 \(restart 1 of 1, run id launch-\w+\.1\)/.test(l)), show(out));
    for (const rank of [0, 1, 2]) {
      const lines = rankLines(out, rank);
      const resumed = lines.map((l) => /^resumed from .*ckpt-0*(\d+)\.json at step (\d+) \((.*)\)$/.exec(l)).find((m) => m);
      assert.ok(resumed && Number(resumed[2]) >= 40, `rank ${rank} did not resume from a checkpoint at or after step 40:\n${show(out)}`);
      assert.match(resumed[3]!, /continues bit for bit/);
      assert.ok(lines.some((l) => /^done: 120 steps, final loss /.test(l)), `rank ${rank} did not finish:\n${show(out)}`);
    }
  });

  it('two launchers whose run tokens differ are refused, and say so', { timeout: 120_000 }, async () => {
    const store = tempStore();
    const s = small();
    try {
      const node = (rank: number, token: string) =>
        towerline(['launch', '--nnodes', '2', '--node-rank', String(rank), '--rdzv', store.url, '--run-id', `tok-${process.pid}`, '--', process.execPath, BIN, ...s.args], {
          env: { TOWERLINE_TOKEN: token },
        });
      const [a, b] = await Promise.all([node(0, 'secret-a'), node(1, 'secret-b')]);
      assert.notEqual(a.code, 0);
      assert.notEqual(b.code, 0);
      assert.ok(rankLines(a, 0).some((l) => /rank 1 on host .* has a different run token and was refused/.test(l)), show(a));
      assert.ok(rankLines(b, 1).some((l) => /this process's run token does not match the group's/.test(l)), show(b));
    } finally {
      store.remove();
      rmSync(s.dir, { recursive: true, force: true });
    }
  });

  it('ranks started the way mpirun and srun start them find their rank in those variables', { timeout: 120_000 }, async () => {
    const store = tempStore();
    const s = small();
    try {
      const common = { TOWERLINE_RDZV: store.url, TOWERLINE_RUN_ID: `env-${process.pid}` };
      const mpi = { ...common, OMPI_COMM_WORLD_RANK: '0', OMPI_COMM_WORLD_SIZE: '2', OMPI_COMM_WORLD_LOCAL_RANK: '0', OMPI_COMM_WORLD_LOCAL_SIZE: '2' };
      const slurm = { ...common, SLURM_PROCID: '1', SLURM_NTASKS: '2', SLURM_LOCALID: '1', SLURM_TASKS_PER_NODE: '2', SLURM_NODEID: '0' };
      const args = ['train', ...s.args.slice(1, s.args.indexOf('--checkpoint-dir')), '--steps', '20'];
      const [a, b] = await Promise.all([towerline(args, { env: mpi }), towerline(args, { env: slurm })]);
      assert.equal(a.code, 0, a.lines.join('\n'));
      assert.equal(b.code, 0, b.lines.join('\n'));
      const done = (o: Out) => o.lines.find((l) => l.startsWith('done: '));
      assert.match(done(a) ?? '', /^done: 20 steps/);
      assert.equal(done(a), done(b), 'both ranks report the same global loss');
    } finally {
      store.remove();
      rmSync(s.dir, { recursive: true, force: true });
    }
  });

  it('options are checked before anything starts', async () => {
    const bad = (o: object, re: RegExp) =>
      assert.rejects(launch({ command: ['true'], ...o }, { out: () => undefined, err: () => undefined, env: {} }), (e: Error) => e instanceof ConfigError && re.test(e.message));
    await bad({ nnodes: 2, runId: 'x' }, /launch\.rdzv: several nodes meet in a shared store/);
    await bad({ nnodes: 2, rdzv: 'file:///tmp/x' }, /launch\.runId: several nodes must give the same --run-id/);
    await bad({ nnodes: 2, nodeRank: 2, rdzv: 'file:///tmp/x', runId: 'x' }, /launch\.nodeRank: must be less than nnodes \(2\)/);
    await bad({ servers: 2, nprocPerNode: 2 }, /launch\.servers: must leave at least one worker: 2 server\(s\) in 2 rank\(s\)/);
    await assert.rejects(launch({ command: ['true'], addr: '10.1.2.3' }, { out: () => undefined, err: () => undefined, env: {} }), /need a run token: set the same secret in TOWERLINE_TOKEN/);
    assert.equal(launchOptionsSchema.safeParse({ command: [] }).success, false);
  });
});
