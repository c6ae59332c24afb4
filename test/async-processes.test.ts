// Mode 'async' across processes (issue 15): 1 server + 2 worker processes on loopback (a process group for the
// rendezvous and the run token, the parameter-server link on its own Gloo context) train MNIST 784-500-10 to >= 97.5%;
// a worker killed mid-run is dropped and the job goes on; a server killed mid-run ends every worker within its
// deadline with an error naming the server.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { killAll, spawnChild, type Rank } from './support/ranks.js';
import type { AsyncChildArgs } from './support/async-child.js';

let runs = 0;
const tmp = mkdtempSync(join(tmpdir(), 'towerline-async-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** Rank 0 serves (its own tower stays idle), ranks 1.. are workers with one CPU tower each. */
async function withRun<T>(workers: number, args: AsyncChildArgs, f: (ranks: Rank[]) => Promise<T>, timeoutMs = 5000): Promise<T> {
  const n = ++runs;
  const rdzv = `file://${join(tmp, `rdzv-${n}`)}`;
  const ranks = Array.from({ length: workers + 1 }, (_, rank) =>
    spawnChild('async-child.ts', rank, args, {
      env: {
        TOWERLINE_ASYNC_ROLE: rank === 0 ? 'server' : 'worker',
        TOWERLINE_RANK: String(rank),
        TOWERLINE_WORLD_SIZE: String(workers + 1),
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
    const args = { devices: 'cpu:0', hidden: 500, epochs: 3, lr: 0.05, decay: 0.5 };
    await withRun(2, args, async ([server, ...workers]) => {
      const done = await server!.next('done', 580_000);
      console.log(`# server: ${done.steps} updates, test accuracy ${done.accuracy}`);
      assert.equal(done.steps, 3 * 937);
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
        assert.ok((e.at as number) - killedAt < 5000 + 5000, 'within the worker deadline (5 s) and the time to close');
        assert.notEqual(await w.exited, 0);
      }
    });
  });
});
