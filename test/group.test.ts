// Process groups on Gloo: options from explicit values and from launchers' environments; 2 and 3 real processes
// over a directory store and over a real redis-server on loopback: rendezvous, exact and bit-identical all-reduces,
// the hierarchical schedule through a communicator, control collectives; a wrong run token, a rank that never
// arrives, a rank SIGKILLed mid-collective and a stalled rank, each failing everyone by its deadline naming it.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { native } from '../src/native/addon.js';
import { groupOptionsFromEnv, resolveGroupOptions, slurmTasksOnNode } from '../src/group/options.js';
import { ProcessGroup } from '../src/group/process-group.js';
import { assertGroupsAvailable, groupSupport, groupsUnavailableMessage } from '../src/group/support.js';
import { tokenProofs } from '../src/group/token.js';
import { hierarchicalSchedule } from '../src/scheduler/hierarchical.js';
import { ConfigError } from '../src/util/validate.js';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { ensureBuilt, ROOT } from './support/consumer.js';
import { killAll, spawnRank, startRedis, tempStore, type Rank, type RankEvent } from './support/ranks.js';
import type { ChildArgs } from './support/group-child.js';

let runs = 0;
const runId = () => `t${process.pid}-${++runs}`;
const SIZES = [1, 2, 7, 1000, 65_537, 1_048_579];
const HIER = [1, 3, 10_001, 1_000_003];

describe('group options', () => {
  const base = { TOWERLINE_RUN_ID: 'r1', TOWERLINE_RDZV: 'file:///tmp/x' };
  it("towerline's variables, then torchrun's, Open MPI's and Slurm's; explicit options win", () => {
    const own = resolveGroupOptions({}, { ...base, TOWERLINE_RANK: '1', TOWERLINE_WORLD_SIZE: '3', RANK: '0', WORLD_SIZE: '9' });
    assert.deepEqual([own.rank, own.worldSize, own.slots, own.address, own.timeoutMs], [1, 3, 1, '127.0.0.1', 30_000]);
    const torch = resolveGroupOptions({}, { ...base, RANK: '2', WORLD_SIZE: '4', LOCAL_RANK: '0', LOCAL_WORLD_SIZE: '2' });
    assert.deepEqual([torch.rank, torch.worldSize, torch.localRank, torch.localWorldSize], [2, 4, 0, 2]);
    const mpi = resolveGroupOptions({}, { ...base, OMPI_COMM_WORLD_RANK: '3', OMPI_COMM_WORLD_SIZE: '4', OMPI_COMM_WORLD_LOCAL_RANK: '1', OMPI_COMM_WORLD_LOCAL_SIZE: '2' });
    assert.deepEqual([mpi.rank, mpi.worldSize, mpi.localRank, mpi.localWorldSize], [3, 4, 1, 2]);
    const slurm = resolveGroupOptions({}, { TOWERLINE_RDZV: 'redis://10.0.0.1:6379', TOWERLINE_TOKEN: 's', SLURM_PROCID: '5', SLURM_NTASKS: '8', SLURM_LOCALID: '1', SLURM_TASKS_PER_NODE: '3(x2),2', SLURM_NODEID: '2', SLURM_JOB_ID: '77' });
    assert.deepEqual([slurm.rank, slurm.worldSize, slurm.localRank, slurm.localWorldSize, slurm.runId], [5, 8, 1, 2, 'slurm-77.0']);
    assert.deepEqual([slurmTasksOnNode('2(x4)', 3), slurmTasksOnNode('3(x2),2', 1), slurmTasksOnNode('1', 0)], [2, 3, 1]);
    assert.throws(() => slurmTasksOnNode('2(x2)', 2), /lists 2 nodes; SLURM_NODEID is 2/);
    const explicit = resolveGroupOptions({ rank: 0, worldSize: 2, slots: 2 }, { ...base, TOWERLINE_RANK: '1', TOWERLINE_WORLD_SIZE: '3' });
    assert.deepEqual([explicit.rank, explicit.worldSize, explicit.slots], [0, 2, 2]);
    assert.equal(groupOptionsFromEnv({ RANK: '1', WORLD_SIZE: '2', TORCHELASTIC_RUN_ID: 'abc' }).options.runId, 'abc');
  });

  it('errors name the option and the variable it came from', () => {
    const bad = (env: Record<string, string>, re: RegExp, explicit = {}) =>
      assert.throws(() => resolveGroupOptions(explicit, env), (e: Error) => e instanceof ConfigError && re.test(e.message));
    bad({ ...base, TOWERLINE_RANK: 'one', TOWERLINE_WORLD_SIZE: '2' }, /TOWERLINE_RANK must be a non-negative integer, got "one"/);
    bad({ ...base, TOWERLINE_RANK: '2', TOWERLINE_WORLD_SIZE: '2' }, /group\.rank: must be less than worldSize \(2\)[\s\S]*came from TOWERLINE_RANK/);
    bad({ ...base, OMPI_COMM_WORLD_RANK: '0' }, /no worldSize; give the worldSize option or set TOWERLINE_WORLD_SIZE/);
    bad({ TOWERLINE_RDZV: 'file:///tmp/x', RANK: '0', WORLD_SIZE: '2' }, /no runId/);
    bad({ TOWERLINE_RUN_ID: 'r', RANK: '0', WORLD_SIZE: '2', MASTER_ADDR: 'h', MASTER_PORT: '29500' }, /TOWERLINE_RDZV is not set.*TCPStore/);
    bad({ ...base, TOWERLINE_RDZV: 'tcp://h:1', TOWERLINE_RANK: '0', TOWERLINE_WORLD_SIZE: '2' }, /group\.rdzv: expected file:\/\/\/shared\/dir or redis:\/\/host:port[\s\S]*TOWERLINE_RDZV/);
    bad({ ...base, TOWERLINE_RANK: '0', TOWERLINE_WORLD_SIZE: '2', TOWERLINE_ADDR: '10.1.2.3' }, /group\.token: binding 10\.1\.2\.3 \(beyond loopback\) needs a run token/);
    bad(base, /group\.slots/, { rank: 0, worldSize: 1, slots: 0 });
    bad(base, /group\.runId/, { rank: 0, worldSize: 1, runId: 'a/b' });
  });

  it('token proofs differ per rank, run and token, and never contain the token', () => {
    const p = tokenProofs('secret', 'run', 3);
    assert.equal(new Set(p).size, 3);
    assert.deepEqual(p, tokenProofs('secret', 'run', 3));
    assert.notDeepEqual(p, tokenProofs('secret', 'run2', 3));
    assert.notDeepEqual(p, tokenProofs('other', 'run', 3));
    assert.ok(p.every((x) => /^[0-9a-f]{64}$/.test(x) && !x.includes('secret')));
  });

  it('a build without Gloo says how to enable process groups', () => {
    const msg = groupsUnavailableMessage('Gloo was not found when this addon was configured');
    assert.match(msg, /Gloo was not found/);
    assert.match(msg, /apt-get install libgloo-dev libhiredis-dev/);
    assert.match(msg, /npm run build:native/);
    assert.throws(() => assertGroupsAvailable({ available: false, reason: 'configured with -DTOWERLINE_GLOO=OFF', stores: [], transports: [] }), /TOWERLINE_GLOO=OFF.*libgloo-dev/);
    assert.match(msg, /TOWERLINE_BUILD_FROM_SOURCE=1 npm rebuild towerline/);
    // This build has them (CI installs libgloo-dev and libhiredis-dev).
    assert.deepEqual(groupSupport(), { available: true, gloo: groupSupport().gloo, stores: ['file', 'redis'], transports: ['tcp'] });
  });
});

describe('the prebuilt addon (built with -DTOWERLINE_GLOO=OFF)', () => {
  it('createRuntime({ group }) says why there are no process groups and how to build them; one process still opens a runtime', { timeout: 600_000 }, async () => {
    // test/consumer.test.ts (which runs first) builds it; standalone this builds it (minutes).
    ensureBuilt((s) => console.log(`# ${s}`));
    const addon = join(ROOT, 'prebuilds', `${process.platform}-${process.arch}`, 'towerline.node');
    const code = [
      "import { createRuntime } from './src/runtime.ts';",
      "import { groupSupport } from './src/group/support.ts';",
      'console.log(JSON.stringify({ support: groupSupport() }));',
      "try { await createRuntime({ devices: 'cpu:0', group: { rank: 0, worldSize: 2, runId: 'r', rdzv: 'file:///tmp/towerline-none' } }); console.log('JOINED?'); }",
      "catch (e) { console.log(JSON.stringify({ error: e.message })); }",
      "const rt = await createRuntime({ devices: 'cpu:0' }); await rt.close(); console.log('ALONE OK');",
    ].join('\n');
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
      cwd: ROOT,
      encoding: 'utf8',
      env: { ...process.env, TOWERLINE_ADDON: addon },
      timeout: 120_000,
    });
    const lines = r.stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { support?: { available: boolean; reason: string }; error?: string });
    assert.deepEqual(lines[0]?.support && { available: lines[0].support.available, reason: lines[0].support.reason }, {
      available: false,
      reason: 'this addon was configured with -DTOWERLINE_GLOO=OFF',
    }, r.stdout + r.stderr);
    const error = lines[1]?.error ?? '';
    assert.match(error, /multi-process training needs process groups, which this addon does not have \(this addon was configured with -DTOWERLINE_GLOO=OFF; the prebuilt addon/);
    assert.match(error, /apt-get install libgloo-dev libhiredis-dev/);
    assert.match(error, /TOWERLINE_BUILD_FROM_SOURCE=1 npm rebuild towerline/);
    assert.match(r.stdout, /^ALONE OK$/m, 'the same addon opens a runtime in one process');
  });
});

describe('one process', () => {
  it('a group of one: all-reduce is the identity, all-gather is its own blob; close is idempotent', async () => {
    const store = tempStore();
    const g = await ProcessGroup.create({ rank: 0, worldSize: 1, runId: runId(), rdzv: store.url }, {});
    const nat = native();
    const dev = nat.openDevice('cpu', 0).id;
    try {
      const buf = nat.alloc(dev, 5, 'f32');
      nat.write(buf, Float32Array.of(1, 2, 3, 4, 5));
      await g.allReduce(buf, 0, 1, 3);
      assert.deepEqual(Array.from(nat.read(buf)), [1, 2, 3, 4, 5]);
      await assert.rejects(g.allReduce(buf, 1, 0, 1), /slot must be in \[0, 1\)/);
      await assert.rejects(g.allReduce(buf, 0, 3, 3), /range \[3, 6\) is outside buffer/);
      assert.deepEqual((await g.allGather(Uint8Array.of(7, 8))).map((b) => Array.from(b)), [[7, 8]]);
      assert.equal(g.peers[0]!.address, '127.0.0.1');
    } finally {
      g.close();
      g.close();
      nat.closeDevice(dev);
      store.remove();
    }
    assert.equal(g.stoppedWith, 'closed');
  });

  it('a communicator whose schedule has remote steps but no group fails naming what is missing', async () => {
    const nat = native();
    const devs = [nat.openDevice('cpu', 20).id, nat.openDevice('cpu', 21).id];
    try {
      const bufs = devs.map((d) => nat.alloc(d, 8, 'f32'));
      const comm = nat.createComm(bufs, hierarchicalSchedule({ ranks: 2, length: 8 }), 5000);
      const progs = devs.map((d, t) => nat.compile(d, [{ kernel: '@collective', inputs: [], outputs: [], attrs: { comm, rank: t } }]));
      await assert.rejects(Promise.all(progs.map((p) => nat.runWith(p, [], []))), /remote step but the communicator has no process group; attach one/);
      nat.releaseComm(comm);
    } finally {
      devs.forEach((d) => nat.closeDevice(d));
    }
  });
});

/** Spawns `worldSize` ranks (or those in `only`) with the same arguments (but `perRank`'s); always kills them at the end. */
async function withRanks<T>(
  base: Omit<ChildArgs, 'rank'>,
  f: (ranks: Rank[]) => Promise<T>,
  only?: number[],
  perRank: (rank: number) => Partial<ChildArgs> = () => ({}),
): Promise<T> {
  const ranks = (only ?? Array.from({ length: base.worldSize }, (_, r) => r)).map((rank) => spawnRank({ ...base, ...perRank(rank), rank }));
  try {
    return await f(ranks);
  } finally {
    killAll(ranks);
    await Promise.all(ranks.map((r) => r.exited));
  }
}

/** Runs f with a fresh directory store, removed after. */
async function withStore<T>(f: (url: string) => Promise<T>): Promise<T> {
  const store = tempStore();
  try {
    return await f(store.url);
  } finally {
    store.remove();
  }
}

async function checkCollectives(worldSize: number, rdzv: string): Promise<void> {
  await withRanks({ scenario: 'collectives', worldSize, runId: runId(), rdzv, slots: 2, token: 'tok', sizes: SIZES, hierarchical: HIER }, async (ranks) => {
    const results = await Promise.all(ranks.map((r) => r.next('result', 120_000)));
    const errors = ranks.flatMap((r) => r.events.filter((e) => e.event === 'error'));
    assert.deepEqual(errors, []);
    for (const res of results) {
      assert.deepEqual(res.gathered, Array.from({ length: worldSize }, (_, q) => `rank ${q} `.repeat(q + 1)));
      assert.equal(res.bcast, `from ${worldSize - 1}`);
    }
    type Row = Record<string, unknown> & { n: number };
    const rows = (e: RankEvent, k: 'flat' | 'hier') => e[k] as Row[];
    for (let i = 0; i < SIZES.length; i++) {
      const per = results.map((e) => rows(e, 'flat')[i]!);
      for (const row of per) {
        assert.equal(row.int, true, `flat all-reduce of ${row.n}: integer sums exact`);
        assert.ok((row.rand as number) < 1e-6, `flat all-reduce of ${row.n}: rel err ${row.rand}`);
      }
      assert.equal(new Set(per.map((r) => r.randHash)).size, 1, `flat all-reduce of ${SIZES[i]}: bit-identical on every rank`);
    }
    for (let i = 0; i < HIER.length; i++) {
      const per = results.map((e) => rows(e, 'hier')[i]!);
      for (const row of per) {
        assert.equal(row.int, true, `hierarchical all-reduce of ${row.n}: equals the flat sum exactly`);
        assert.ok((row.rand as number) < 1e-6, `hierarchical all-reduce of ${row.n}: rel err ${row.rand}`);
      }
      const hashes = per.flatMap((r) => r.randHashes as string[]);
      assert.equal(hashes.length, worldSize * 2);
      assert.equal(new Set(hashes).size, 1, `hierarchical all-reduce of ${HIER[i]}: every tower of every process bit-identical`);
    }
    await Promise.all(ranks.map((r) => r.next('closed', 30_000)));
    assert.deepEqual(await Promise.all(ranks.map((r) => r.exited)), ranks.map(() => 0));
  });
}

async function checkKill(rdzv: string): Promise<void> {
  const timeoutMs = 15_000;
  await withRanks({ scenario: 'loop', worldSize: 3, runId: runId(), rdzv, timeoutMs }, async (ranks) => {
    await Promise.all(ranks.map((r) => r.next('looping', 60_000)));
    const killedAt = Date.now();
    ranks[2]!.proc.kill('SIGKILL');
    for (const r of ranks.slice(0, 2)) {
      const e = await r.next('error', timeoutMs + 15_000);
      assert.match(e.message as string, /connection to rank 2 on host .* closed: the process died\?/);
      await r.next('closed', 10_000);
      assert.ok(Date.now() - killedAt < timeoutMs + 10_000, `rank ${r.rank} took ${Date.now() - killedAt} ms`);
    }
    assert.deepEqual(await Promise.all(ranks.slice(0, 2).map((r) => r.exited)), [0, 0]);
  });
}

describe('processes over a directory store', () => {
  it('3 processes × 2 towers: rendezvous, control collectives, exact bit-identical flat and hierarchical all-reduces', { timeout: 180_000 }, () =>
    withStore((url) => checkCollectives(3, url)));

  it('a wrong run token is refused, and both sides say so', { timeout: 60_000 }, () =>
    withStore((url) =>
      withRanks({ scenario: 'join', worldSize: 2, runId: runId(), rdzv: url, token: 'right' }, async (ranks) => {
        const [e0, e1] = await Promise.all(ranks.map((r) => r.next('error', 45_000)));
        assert.match(e0!.message as string, /rank 1 on host .* has a different run token and was refused/);
        assert.match(e1!.message as string, /this process's run token does not match the group's \(rank 0 on host /);
        assert.ok(ranks.every((r) => !r.events.some((e) => e.event === 'ready')));
      }, undefined, (rank) => (rank === 1 ? { token: 'wrong' } : {}))));

  it('a rank that never arrives fails the others at the rendezvous deadline, naming it', { timeout: 60_000 }, () => {
    const deadline = 3000;
    return withStore((url) =>
      withRanks({ scenario: 'join', worldSize: 3, runId: runId(), rdzv: url, rendezvousTimeoutMs: deadline }, async (ranks) => {
        const errs = await Promise.all(ranks.map((r) => r.next('error', 45_000)));
        for (const e of errs) {
          assert.match(e.message as string, /2 of 3 ranks joined run '.*' \(file:\/\/.*\) within 3 s: rank 2 never arrived/);
          assert.ok(e.ms >= deadline, `failed after ${e.ms} ms, before the ${deadline} ms deadline`);
        }
      }, [0, 1]));
  });

  it('a rank SIGKILLed mid-collective fails every other rank within its deadline naming it; close() returns', { timeout: 90_000 }, () =>
    withStore((url) => checkKill(url)));

  it('a stalled rank fails the others after their deadline: it did not answer, named with its host', { timeout: 90_000 }, () => {
    const timeoutMs = 3000;
    return withStore((url) =>
      withRanks({ scenario: 'stall', worldSize: 3, runId: runId(), rdzv: url, timeoutMs, stallRank: 1 }, async (ranks) => {
        await Promise.all(ranks.map((r) => r.next('looping', 60_000)));
        for (const r of [ranks[0]!, ranks[2]!]) {
          const e = await r.next('error', 60_000);
          assert.match(e.message as string, /rank 1 on host \S+ \(127\.0\.0\.1\) did not answer within 3000 ms in all-reduce \(slot 0\)/);
          await r.next('closed', 10_000);
        }
        // The stalled rank wakes up to a stopped group that tells it why.
        const late = await ranks[1]!.next('error', 60_000);
        assert.match(late.message as string, /rank 1 on host .* did not answer within 3000 ms/);
      }));
  });
});

describe('processes over a real redis-server on loopback', () => {
  let redis: Awaited<ReturnType<typeof startRedis>>;
  before(async () => {
    redis = await startRedis();
  });
  after(async () => {
    await redis?.stop();
  });

  it('2 processes × 2 towers: the same collectives through a Redis rendezvous', { timeout: 180_000 }, async () => {
    await checkCollectives(2, redis.url);
  });

  it('3 processes: a rank SIGKILLed mid-collective is named by the others (notices through Redis)', { timeout: 90_000 }, async () => {
    await checkKill(redis.url);
  });

  it('an unreachable Redis store fails with the URL and a hint', async () => {
    await assert.rejects(ProcessGroup.create({ rank: 0, worldSize: 1, runId: runId(), rdzv: 'redis://127.0.0.1:1' }, {}), /cannot reach the rendezvous store redis:\/\/127\.0\.0\.1:1: .*is redis-server running there\?/);
  });
});
