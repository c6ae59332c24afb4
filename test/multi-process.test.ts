// Training across processes (issue 14): runtimes in 2 and 3 processes (1 and 2 CPU towers each) joined over Gloo/TCP
// on loopback, through a directory and a real redis-server: one step's gradient equals one device's whole-batch
// gradient, every replica of every process is bit-identical after 50 steps, the same seed twice gives the same bits;
// rank 0 writes the checkpoints and every rank resumes from them (bit for bit on the same world, and said otherwise);
// settings that differ, a wrong run token, and a step that fails on one rank fail every rank fast, naming it.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { createRuntime, mnist } from '../src/runtime.js';
import { mnistMlp } from '../src/model/spec.js';
import { relErr } from '../src/reference/relerr.js';
import { killAll, spawnChild, startRedis, tempStore, type Rank, type RankEvent } from './support/ranks.js';
import type { TrainChildArgs } from './support/train-child.js';

let runs = 0;
const runId = () => `mp${process.pid}-${++runs}`;
const tmp = mkdtempSync(join(tmpdir(), 'towerline-mp-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
const dir = (name: string) => join(tmp, `${name}-${++runs}`);

type Base = Omit<TrainChildArgs, 'group'> & { group: Omit<NonNullable<TrainChildArgs['group']>, 'rank'> };

/** Starts one child per rank (args(rank) adjusts each), runs f, and always kills what is left. */
async function withRanks<T>(
  worldSize: number,
  base: Base,
  f: (ranks: Rank[]) => Promise<T>,
  args: (rank: number) => Partial<TrainChildArgs> = () => ({}),
  prefix?: (rank: number) => string[],
): Promise<T> {
  const ranks = Array.from({ length: worldSize }, (_, rank) => {
    const a = { ...base, ...args(rank) };
    return spawnChild('train-child.ts', rank, { ...a, group: { ...base.group, ...a.group, rank, worldSize } }, { prefix: prefix?.(rank) });
  });
  try {
    return await f(ranks);
  } finally {
    killAll(ranks);
    await Promise.all(ranks.map((r) => r.exited));
  }
}

/** Every rank's event `name`, failing with the ranks' errors and stderr when one has none. */
async function each(ranks: Rank[], name: string, ms = 120_000): Promise<RankEvent[]> {
  return Promise.all(ranks.map((r) => r.next(name, ms)));
}

/** One device's gradient of one step on the whole batch (the reference every process must match). */
async function singleDeviceGradient(): Promise<Map<string, Float32Array>> {
  const rt = await createRuntime({ devices: 'cpu:0' });
  try {
    await rt.train({ model: mnistMlp(64), optimizer: { type: 'momentum', lr: 0.05, momentum: 0.9 }, data: mnist({ batchSize: 128 }), steps: 1, seed: 11 }).done;
    return (await rt.readGradients())[0]!;
  } finally {
    await rt.close();
  }
}

function readGradient(out: string, rank: number, e: RankEvent): Map<string, Float32Array> {
  const bytes = readFileSync(join(out, `grad-${rank}.bin`));
  const all = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  const names = e.names as string[];
  const sizes = e.sizes as number[];
  let off = 0;
  return new Map(names.map((n, i) => [n, all.subarray(off, (off += sizes[i]!))]));
}

let reference: Map<string, Float32Array> | undefined;

/** Gradient equivalence and bit-identical replicas for `worldSize` processes × `towers`; returns the weight hashes. */
async function equivalence(
  worldSize: number,
  towers: number,
  rdzv: string,
  extra: Partial<TrainChildArgs> = {},
  args?: (rank: number) => Partial<TrainChildArgs>,
  prefix?: (rank: number) => string[],
): Promise<string[]> {
  const out = dir('grad');
  mkdirSync(out);
  reference ??= await singleDeviceGradient();
  const base: Base = { scenario: 'equivalence', devices: `cpu*${towers}`, group: { runId: runId(), rdzv }, steps: 50, out, ...extra };
  return withRanks(worldSize, base, async (ranks) => {
    const grads = await each(ranks, 'gradients');
    const hashes = grads.flatMap((g) => g.hashes as string[]);
    assert.equal(hashes.length, worldSize * towers);
    assert.equal(new Set(hashes).size, 1, 'after the all-reduce every tower of every process holds the same gradient bits');
    for (const [r, g] of grads.entries()) {
      const got = readGradient(out, r, g);
      for (const [name, want] of reference!) {
        const err = relErr(got.get(name)!, want);
        assert.ok(err < 1e-5, `rank ${r}, ${name}: rel err ${err} against one device's whole-batch gradient`);
      }
    }
    const weights = await each(ranks, 'weights');
    const all = weights.flatMap((w) => w.hashes as string[]);
    assert.equal(new Set(all).size, 1, `after ${base.steps} steps every replica of every process is bit-identical`);
    await each(ranks, 'closed', 30_000);
    assert.deepEqual(ranks.flatMap((r) => r.events.filter((e) => e.event === 'error')), []);
    assert.deepEqual(await Promise.all(ranks.map((r) => r.exited)), ranks.map(() => 0));
    return all;
  }, args, prefix);
}

describe('2 processes × 2 CPU towers over a directory store', () => {
  const ckptA = dir('ckpt-rank0');
  const ckptB = dir('ckpt-rank1');
  let first: string[] = [];

  it('one step equals one device on the whole batch; 50 steps keep every replica bit-identical; rank 0 writes the checkpoints', { timeout: 180_000 }, async () => {
    const store = tempStore();
    try {
      // Rank 1 is given another checkpoint dir: it must stay empty (only rank 0 writes).
      first = await equivalence(2, 2, store.url, {}, (rank) => ({ checkpoint: { dir: rank === 0 ? ckptA : ckptB, everySteps: 25 } }));
    } finally {
      store.remove();
    }
    assert.deepEqual(readdirSync(ckptA).filter((f) => f.endsWith('.json')).sort(), ['ckpt-000000025.json', 'ckpt-000000050.json'], 'every 25 steps (the 1-step gradient run writes none)');
    assert.ok(!existsSync(ckptB) || readdirSync(ckptB).length === 0, 'rank 1 wrote no checkpoint');
  });

  it('the same seed twice gives bit-identical weights', { timeout: 180_000 }, async () => {
    const store = tempStore();
    try {
      const again = await equivalence(2, 2, store.url);
      assert.deepEqual(again, first);
    } finally {
      store.remove();
    }
  });

  it('every rank resumes from rank 0\'s checkpoint (rank 1 cannot see its files): bit for bit on the same world', { timeout: 180_000 }, async () => {
    rmSync(join(ckptA, 'ckpt-000000050.json'));
    rmSync(join(ckptA, 'ckpt-000000050.safetensors'));
    const store = tempStore();
    try {
      const base: Base = { scenario: 'train', devices: 'cpu*2', group: { runId: runId(), rdzv: store.url }, steps: 50 };
      await withRanks(2, base, async (ranks) => {
        const resumed = await each(ranks, 'resumed');
        for (const r of resumed) {
          assert.equal(r.step, 25);
          assert.equal(r.bitIdentical, true, r.note as string);
          assert.match(r.note as string, /on the world it was written on \(2 processes × 2 towers\): the trajectory continues bit for bit/);
        }
        const weights = await each(ranks, 'weights');
        assert.deepEqual(weights.flatMap((w) => w.hashes as string[]), first, 'the resumed run ends with the uninterrupted run\'s bits');
        await each(ranks, 'closed', 30_000);
      }, (rank) => ({ checkpoint: { dir: rank === 0 ? ckptA : ckptB, everySteps: 25, resume: true } }));
    } finally {
      store.remove();
    }
  });

  it('one process with 3 towers resumes the same checkpoint and says the trajectory is no longer bit-identical', { timeout: 120_000 }, async () => {
    const rt = await createRuntime({ devices: 'cpu*3', layout: { extraTowers: 'threads' } });
    try {
      const run = rt.train({ model: mnistMlp(64), optimizer: { type: 'momentum', lr: 0.05, momentum: 0.9 }, data: mnist({ batchSize: 128 }), steps: 60, seed: 11, checkpoint: { dir: ckptA, resume: true } });
      const events: Array<{ type: string; note?: string; bitIdentical?: boolean; step?: number }> = [];
      run.events$.subscribe((e) => events.push(e));
      const s = await run.done;
      const resumed = events.find((e) => e.type === 'resumed')!;
      assert.equal(resumed.step, 50, 'the newest checkpoint (the resumed 2-process run wrote step 50 again)');
      assert.equal(resumed.bitIdentical, false);
      assert.match(resumed.note!, /on 1 process × 3 towers, written on 2 processes × 2 towers: the gradient is exact but its shards and summation order differ/);
      assert.ok(Number.isFinite(s.finalLoss) && s.steps === 60);
    } finally {
      await rt.close();
    }
  });
});

describe('3 processes × 1 CPU tower over a real redis-server', () => {
  let redis: Awaited<ReturnType<typeof startRedis>>;
  before(async () => {
    redis = await startRedis();
  });
  after(async () => {
    await redis?.stop();
  });

  it('one step equals one device on the whole batch; 50 steps keep every replica bit-identical', { timeout: 180_000 }, async () => {
    await equivalence(3, 1, redis.url);
  });
});

describe('failing together', () => {
  it('processes started with different settings fail before step 1, each naming the rank and the field', { timeout: 120_000 }, async () => {
    const store = tempStore();
    try {
      const base: Base = { scenario: 'train', devices: 'cpu:0', group: { runId: runId(), rdzv: store.url }, steps: 5 };
      await withRanks(2, base, async (ranks) => {
        const errors = await each(ranks, 'error');
        for (const e of errors) assert.match(e.message as string, /disagree on the run settings[\s\S]*rank 1 on host \S+ \(127\.0\.0\.1\): seed: rank 0 has 11, rank 1 has 12/);
        assert.ok(ranks.every((r) => !r.events.some((e) => e.event === 'step')), 'no rank took a step');
        await each(ranks, 'closed', 30_000);
      }, (rank) => ({ seed: 11 + rank }));
    } finally {
      store.remove();
    }
  });

  it('a process with another run token is refused by createRuntime, and both sides say so', { timeout: 60_000 }, async () => {
    const store = tempStore();
    try {
      const base: Base = { scenario: 'train', devices: 'cpu:0', group: { runId: runId(), rdzv: store.url, token: 'right' }, steps: 5 };
      await withRanks(2, base, async (ranks) => {
        const [e0, e1] = await each(ranks, 'error', 45_000);
        assert.match(e0!.message as string, /rank 1 on host .* has a different run token and was refused/);
        assert.match(e1!.message as string, /this process's run token does not match the group's/);
        assert.ok(ranks.every((r) => !r.events.some((e) => e.event === 'ready')));
      }, (rank) => (rank === 1 ? { group: { token: 'wrong' } } : {}));
    } finally {
      store.remove();
    }
  });

  it('a step that fails on one rank before its all-reduce fails the others at once, naming the rank, its host and the cause', { timeout: 120_000 }, async () => {
    const store = tempStore();
    try {
      // A long collective deadline: the others must not wait for it.
      const base: Base = { scenario: 'train', devices: 'cpu:0', group: { runId: runId(), rdzv: store.url, timeoutMs: 60_000 }, steps: 20 };
      await withRanks(3, base, async (ranks) => {
        const failed = await ranks[1]!.next('error', 90_000);
        assert.match(failed.message as string, /injected fault/);
        for (const r of [ranks[0]!, ranks[2]!]) {
          const e = await r.next('error', 30_000);
          assert.match(e.message as string, /rank 1 on host \S+ \(127\.0\.0\.1\) stopped the group: its run failed after step 2: .*injected fault/);
          const late = (e.at as number) - (failed.at as number);
          assert.ok(late < 15_000, `rank ${r.rank} failed ${late} ms after rank 1 (its deadline is 60 s)`);
        }
        const closed = await each(ranks, 'closed', 30_000);
        assert.ok(closed.every((c) => (c.closeMs as number) < 10_000), 'close() returns on every rank');
      }, (rank) => (rank === 1 ? { faultAtStep: 3 } : {}));
    } finally {
      store.remove();
    }
  });
});

// Two "machines": two network namespaces joined by a veth pair, each rank binding its namespace's address only (no
// loopback path exists between them). Needs root and `ip netns` (CI runs as root).
function netnsUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root to create network namespaces (CI runs as root)';
  const r = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) return `'ip netns' is not available (${r.error?.message ?? r.stderr.trim()}); install iproute2`;
  return undefined;
}

describe('two machines: network namespaces joined by a veth pair', () => {
  const skip = netnsUnavailable();
  const tag = String(process.pid % 100_000);
  const ns = [`tl${tag}a`, `tl${tag}b`];
  const addr = ['10.99.0.1', '10.99.0.2'];
  const ip = (...a: string[]) => {
    const r = spawnSync('ip', a, { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`ip ${a.join(' ')}: ${r.stderr.trim()}`);
  };
  before(() => {
    if (skip) return;
    for (const n of ns) ip('netns', 'add', n);
    ip('link', 'add', `tlv${tag}a`, 'type', 'veth', 'peer', 'name', `tlv${tag}b`);
    ns.forEach((n, i) => {
      const dev = `tlv${tag}${'ab'[i]}`;
      ip('link', 'set', dev, 'netns', n);
      ip('-n', n, 'addr', 'add', `${addr[i]}/24`, 'dev', dev);
      ip('-n', n, 'link', 'set', dev, 'up');
      ip('-n', n, 'link', 'set', 'lo', 'up');
    });
  });
  after(() => {
    if (!skip) for (const n of ns) spawnSync('ip', ['netns', 'del', n]);
  });
  const inNs = (rank: number) => ['ip', 'netns', 'exec', ns[rank]!];
  const bind = (rank: number): Partial<TrainChildArgs> => ({ group: { address: addr[rank]!, token: 'netns-secret' } });

  it('2 processes, each binding its namespace address: one step equals one device, replicas bit-identical after 50 steps', { skip, timeout: 180_000 }, async () => {
    const store = tempStore();
    try {
      await equivalence(2, 1, store.url, {}, bind, inNs);
    } finally {
      store.remove();
    }
  });

  it('a step failing in one namespace fails the other at once, naming the rank and its address', { skip, timeout: 120_000 }, async () => {
    const store = tempStore();
    try {
      const base: Base = { scenario: 'train', devices: 'cpu:0', group: { runId: runId(), rdzv: store.url, timeoutMs: 60_000 }, steps: 20 };
      await withRanks(2, base, async (ranks) => {
        const e = await ranks[0]!.next('error', 90_000);
        assert.match(e.message as string, /rank 1 on host \S+ \(10\.99\.0\.2\) stopped the group: its run failed after step 2: .*injected fault/);
        await each(ranks, 'closed', 30_000);
      }, (rank) => ({ ...bind(rank), ...(rank === 1 ? { faultAtStep: 3 } : {}) }), inNs);
    } finally {
      store.remove();
    }
  });
});
