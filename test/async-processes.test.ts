// Mode 'async' across processes (issue 15): 1 server + 2 worker processes on loopback (a process group for the
// rendezvous and the run token, the parameter-server link on its own Gloo context) train MNIST 784-500-10 to >= 97.5%;
// a worker killed mid-run is dropped and the job goes on; a server killed mid-run ends every worker within its
// deadline with an error naming the server. With 2 servers (each owning a shard, Note [Parameter shards]) + 2 workers
// the same MNIST run reaches >= 97.5%; a non-lead server killed mid-run ends every worker naming it; `towerline launch
// --servers 2 --nproc-per-node 4` starts such a run.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { killAll, spawnChild, type Rank } from './support/ranks.js';
import { shardBySize } from '../src/async/shards.js';
import type { AsyncChildArgs } from './support/async-child.js';

let runs = 0;
const tmp = mkdtempSync(join(tmpdir(), 'towerline-async-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** Ranks 0..servers-1 serve (their own towers stay idle), the next ranks are workers with one CPU tower each. */
async function withRun<T>(workers: number, args: AsyncChildArgs, f: (ranks: Rank[]) => Promise<T>, timeoutMs = 5000, servers = 1): Promise<T> {
  const n = ++runs;
  const rdzv = `file://${join(tmp, `rdzv-${n}`)}`;
  const ranks = Array.from({ length: workers + servers }, (_, rank) =>
    spawnChild('async-child.ts', rank, args, {
      env: {
        TOWERLINE_ASYNC_ROLE: rank < servers ? 'server' : 'worker',
        TOWERLINE_ASYNC_SERVERS: String(servers),
        TOWERLINE_RANK: String(rank),
        TOWERLINE_WORLD_SIZE: String(workers + servers),
        TOWERLINE_RUN_ID: `async${process.pid}-${n}`,
        TOWERLINE_RDZV: rdzv,
        TOWERLINE_TIMEOUT_MS: String(timeoutMs),
      },
    }),
  );
  try {
    return await f(ranks);
  } finally {
    killAll(ranks);
    await Promise.all(ranks.map((r) => r.exited));
  }
}

describe('asynchronous training across processes', () => {
  it('1 server + 2 worker processes on loopback train MNIST 784-500-10 to >= 97.5%', { timeout: 600_000 }, async () => {
    // Four epochs: three ended at 97.70-97.81% here (bar 97.5%; push order and staleness vary from run to run).
    const args = { devices: 'cpu:0', hidden: 500, epochs: 4, lr: 0.05, decay: 0.5 };
    await withRun(2, args, async ([server, ...workers]) => {
      const done = await server!.next('done', 580_000);
      console.log(`# server: ${done.steps} updates, test accuracy ${done.accuracy}`);
      assert.equal(done.steps, 4 * 937);
      assert.ok((done.accuracy as number) >= 0.975, `test accuracy ${done.accuracy}`);
      for (const w of workers) assert.equal(await w.exited, 0, w.stderr());
      assert.equal(await server!.exited, 0, server!.stderr());
    });
  });

  it('a worker killed mid-run is dropped with an event naming it; the job goes on', { timeout: 300_000 }, async () => {
    await withRun(2, { devices: 'cpu:0', hidden: 64, steps: 400, lr: 0.05 }, async ([server, w1, w2]) => {
      await server!.next('step', 120_000);
      w2!.proc.kill('SIGKILL');
      const dropped = await server!.next('dropped', 60_000);
      assert.match(dropped.device as string, /worker rank 2/);
      const done = await server!.next('done', 240_000);
      assert.equal(done.steps, 400);
      assert.equal(await w1!.exited, 0, w1!.stderr());
    });
  });

  it('a server killed mid-run ends every worker within its deadline, naming the server', { timeout: 300_000 }, async () => {
    await withRun(2, { devices: 'cpu:0', hidden: 64, steps: 1_000_000, lr: 0.05 }, async ([server, ...workers]) => {
      await server!.next('step', 120_000);
      const killedAt = Date.now();
      server!.proc.kill('SIGKILL');
      for (const w of workers) {
        const e = await w.next('error', 30_000);
        console.log(`# worker ${w.rank}: ${Date.now() - killedAt} ms after the kill: ${e.message}`);
        assert.match(e.message as string, /parameter server \(rank 0\)/);
        assert.doesNotMatch(e.message as string, /tower on parameter server/, 'the server is named as the server, not as a tower');
        assert.ok((e.at as number) - killedAt < 5000 + 5000, 'within the worker deadline (5 s) and the time to close');
        assert.notEqual(await w.exited, 0);
      }
    });
  });

  it('parameters are sharded by size: greedy by bytes over the list, each parameter whole on one server', () => {
    const mlp = [784 * 500 * 4, 500 * 4, 500 * 10 * 4, 10 * 4]; // MNIST 784-500-10
    assert.deepEqual(shardBySize(mlp, 1).map((s) => [s.first, s.end]), [[0, 4]]);
    assert.deepEqual(shardBySize(mlp, 2).map((s) => [s.first, s.end]), [[0, 1], [1, 4]]);
    assert.deepEqual(shardBySize([4, 4, 4, 4, 4, 4], 3).map((s) => [s.first, s.end]), [[0, 2], [2, 4], [4, 6]]);
    assert.deepEqual(shardBySize([100, 1, 1, 1], 4).map((s) => [s.first, s.end]), [[0, 1], [1, 2], [2, 3], [3, 4]]);
    assert.throws(() => shardBySize([4, 4], 3), /3 parameter servers need at least 3 parameters/);
  });

  it('2 servers + 2 worker processes, each server owning a shard, train MNIST 784-500-10 to >= 97.5%', { timeout: 600_000 }, async () => {
    const args = { devices: 'cpu:0', hidden: 500, epochs: 4, lr: 0.05, decay: 0.5 };
    await withRun(2, args, async ([lead, follower, ...workers]) => {
      const done = await lead!.next('done', 580_000);
      console.log(`# lead server: ${done.steps} updates, test accuracy ${done.accuracy}`);
      assert.equal(done.steps, 4 * 937);
      assert.ok((done.accuracy as number) >= 0.975, `test accuracy ${done.accuracy}`);
      const other = await follower!.next('done', 60_000);
      assert.equal(other.steps, 4 * 937, 'the other server applied every gradient too');
      for (const r of [lead!, follower!, ...workers]) assert.equal(await r.exited, 0, r.stderr());
    }, 5000, 2);
  });

  it('a non-lead server killed mid-run ends every worker within its deadline, naming that server', { timeout: 300_000 }, async () => {
    await withRun(2, { devices: 'cpu:0', hidden: 64, steps: 1_000_000, lr: 0.05 }, async ([lead, follower, ...workers]) => {
      await lead!.next('step', 120_000);
      const killedAt = Date.now();
      follower!.proc.kill('SIGKILL');
      for (const w of workers) {
        const e = await w.next('error', 30_000);
        console.log(`# worker ${w.rank}: ${Date.now() - killedAt} ms after the kill: ${e.message}`);
        assert.match(e.message as string, /parameter server \(rank 1\)/);
        assert.doesNotMatch(e.message as string, /tower on parameter server/, 'the server is named as the server, not as a tower');
        assert.ok((e.at as number) - killedAt < 5000 + 5000, 'within the worker deadline (5 s) and the time to close');
        assert.notEqual(await w.exited, 0);
      }
    }, 5000, 2);
  });

  it('towerline launch --servers 2 --nproc-per-node 4 starts 2 servers and 2 workers', { timeout: 300_000 }, async () => {
    const bin = fileURLToPath(new URL('../bin/towerline.mjs', import.meta.url));
    const args = ['launch', '--servers', '2', '--nproc-per-node', '4', '--', process.execPath, bin, 'train', '--mode', 'async', '--devices', 'cpu:0',
      '--batch-size', '64', '--steps', '60', '--lr', '0.05', '--seed', '3', '--log-every', '20'];
    const child = spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    assert.equal(code, 0, out.slice(-4000));
    for (const rank of [0, 1]) assert.match(out, new RegExp(`\\[rank ${rank}\\] done: 60 steps`), out.slice(-4000));
  });
});
