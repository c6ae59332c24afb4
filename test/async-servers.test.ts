// Several parameter servers made whole (issue 15; docs/async.md "Several servers"). With one worker tower the servers
// take the same pushes in the same order, so a run on 2 servers must give the very bits of the same run on 1: the
// weights, optimizer slots and EMA of its final checkpoint (written by the lead, gathered from both shards), every
// step's loss, with clipping by the global norm active (Note [Global norm across shards]: a shard's own norm would
// clip differently) and the evaluation on the EMA (gathered from both shards). A checkpoint written on 2 servers
// resumes on 2 and on 1 and continues the uninterrupted run bit for bit (Note [Shard checkpoints]). A NaN in one
// shard's part of a gradient makes every server skip the update. With 2 workers the reported staleness is the
// largest over the servers and stays within maxStaleness.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { killAll, spawnChild, type Rank, type RankEvent } from './support/ranks.js';
import { latestCheckpoint, loadCheckpoint } from '../src/io/checkpoint.js';
import type { AsyncChildArgs } from './support/async-child.js';
import { AsyncLoop } from '../src/async/loop.js';
import { BatchIndex } from '../src/async/batches.js';
import { asyncSettings } from '../src/async/settings.js';
import type { AsyncTower, Computed } from '../src/async/tower.js';
import type { Applied } from '../src/async/native.js';
import type { ServerTower } from '../src/async/server.js';
import type { AsyncCheckpoints } from '../src/async/checkpoint.js';
import { parseTrainOptions } from '../src/options.js';
import { mnist } from '../src/runtime.js';
import { mnistMlp } from '../src/model/spec.js';
import type { StepEvent } from '../src/events.js';

let runs = 0;
const tmp = mkdtempSync(join(tmpdir(), 'towerline-servers-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** Runs `servers` servers and `workers` workers (one CPU tower each) to the end; returns every rank's events. */
async function run(servers: number, workers: number, args: AsyncChildArgs): Promise<RankEvent[][]> {
  const n = ++runs;
  const size = servers + workers;
  const ranks: Rank[] = Array.from({ length: size }, (_, rank) =>
    spawnChild('async-child.ts', rank, args, {
      env: {
        TOWERLINE_ASYNC_ROLE: rank < servers ? 'server' : 'worker',
        TOWERLINE_ASYNC_SERVERS: String(servers),
        TOWERLINE_RANK: String(rank),
        TOWERLINE_WORLD_SIZE: String(size),
        TOWERLINE_RUN_ID: `servers${process.pid}-${n}`,
        TOWERLINE_RDZV: `file://${join(tmp, `rdzv-${n}`)}`,
        TOWERLINE_TIMEOUT_MS: '20000',
      },
    }),
  );
  try {
    for (const r of ranks) assert.equal(await r.exited, 0, `rank ${r.rank}: ${r.stderr().slice(-3000)} ${JSON.stringify(r.events.filter((e) => e.event === 'error'))}`);
    return ranks.map((r) => r.events);
  } finally {
    killAll(ranks);
    await Promise.all(ranks.map((r) => r.exited));
  }
}

/** The latest checkpoint in `dir`: its step and every tensor's bytes by name. */
async function checkpointIn(dir: string): Promise<{ step: number; tensors: Map<string, Buffer> }> {
  const path = await latestCheckpoint(dir);
  assert.ok(path, `no checkpoint in ${dir}`);
  const ck = await loadCheckpoint(path);
  return { step: ck.step, tensors: new Map([...ck.tensors].map(([name, t]) => [name, Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength)])) };
}

function assertSameState(a: Map<string, Buffer>, b: Map<string, Buffer>, what: string): void {
  assert.deepEqual([...b.keys()].sort(), [...a.keys()].sort(), `${what}: the same tensors`);
  const differing = [...a].filter(([name, bytes]) => !bytes.equals(b.get(name)!)).map(([name]) => name);
  assert.deepEqual(differing, [], `${what}: tensors that differ`);
}

const of = (events: RankEvent[], kind: string) => events.filter((e) => e.event === kind);

describe('several parameter servers', () => {
  it('2 servers give the bits of 1 server with one worker tower: weights, slots, EMA, losses; clipping by the global norm; evaluation on the EMA', { timeout: 600_000 }, async () => {
    // 100 steps of 600 = one epoch, evaluated at its end; clipNorm 0.25 clips part of the gradients.
    const clipNorm = 0.25;
    const base = { devices: 'cpu:0', hidden: 32, epochs: 1, batchSize: 600, lr: 0.1, clipNorm, emaDecay: 0.9, everyStep: true };
    const one = await run(1, 1, { ...base, checkpoint: { dir: join(tmp, 'one') } });
    const two = await run(2, 1, { ...base, checkpoint: { dir: join(tmp, 'two') } });
    const steps1 = of(one[0]!, 'step');
    const steps2 = of(two[0]!, 'step');
    assert.equal(steps1.length, 100);
    const norms = steps1.map((e) => e.gradientNorm as number).sort((a, b) => a - b);
    const clipped = norms.filter((x) => x > clipNorm).length;
    console.log(`# ${clipped} of 100 updates clipped (global norm > clipNorm ${clipNorm}; norms ${norms[0]} .. ${norms[99]})`);
    assert.ok(clipped >= 10, `clipping must be active for this test to mean anything: ${clipped} updates clipped`);
    assert.deepEqual(steps2.map((e) => [e.loss, e.gradientNorm]), steps1.map((e) => [e.loss, e.gradientNorm]), 'every update: the same loss and global gradient norm');
    const [ck1, ck2] = [await checkpointIn(join(tmp, 'one')), await checkpointIn(join(tmp, 'two'))];
    assert.equal(ck2.step, 100);
    assert.ok([...ck1.tensors.keys()].some((k) => k.startsWith('ema/')), 'the checkpoint holds the EMA');
    assertSameState(ck1.tensors, ck2.tensors, '2 servers vs 1');
    const [e1] = of(one[0]!, 'evaluation');
    const [e2] = of(two[0]!, 'evaluation');
    console.log(`# evaluation on the EMA: 1 server ${e1?.loss} / ${e1?.accuracy}, 2 servers ${e2?.loss} / ${e2?.accuracy}`);
    assert.ok(e1 && e2 && e1.useEma === true && e2.useEma === true, JSON.stringify([e1, e2]));
    assert.deepEqual([e2.loss, e2.accuracy], [e1.loss, e1.accuracy], 'the same evaluation: the EMA of both shards');
  });

  it('a checkpoint written on 2 servers resumes on 2 and on 1, continuing the uninterrupted run bit for bit', { timeout: 600_000 }, async () => {
    const base = { devices: 'cpu:0', hidden: 32, lr: 0.05, emaDecay: 0.99, clipNorm: 2 };
    const whole = join(tmp, 'whole');
    await run(1, 1, { ...base, steps: 60, checkpoint: { dir: whole } });
    const first = join(tmp, 'first');
    const written = await run(2, 1, { ...base, steps: 40, checkpoint: { dir: first, everySteps: 20 } });
    assert.deepEqual(of(written[0]!, 'checkpoint').map((e) => e.step), [20, 40]);
    for (const servers of [2, 1]) {
      const dir = join(tmp, `resume-on-${servers}`);
      cpSync(first, dir, { recursive: true });
      const resumed = await run(servers, 1, { ...base, steps: 60, checkpoint: { dir, everySteps: 20, resume: true } });
      assert.deepEqual(of(resumed[0]!, 'resumed').map((e) => e.step), [40], `resumed on ${servers} server(s) from step 40`);
      const ck = await checkpointIn(dir);
      assert.equal(ck.step, 60);
      assertSameState((await checkpointIn(whole)).tensors, ck.tensors, `resumed on ${servers} server(s) vs the uninterrupted run`);
    }
  });

  it('the non-finite guard on every server sees the whole gradient: a NaN in the lead\'s shard makes both skip, as one server does, naming the tower', { timeout: 600_000 }, async () => {
    // Element 5 of the gradient is in dense1's kernel, the lead's shard (Note [Parameter shards]): a server that
    // guarded on its own shard's norm alone would apply its part of that update.
    const base = { devices: 'cpu:0', hidden: 32, steps: 20, lr: 0.05, nanAt: 5, nonFinite: 'skip' as const };
    const one = await run(1, 1, { ...base, checkpoint: { dir: join(tmp, 'nan-one') } });
    const two = await run(2, 1, { ...base, checkpoint: { dir: join(tmp, 'nan-two') } });
    for (const [events, worker] of [[one, 1], [two, 2]] as const) {
      const skipped = of(events[0]!, 'skipped');
      assert.equal(skipped.length, 1, JSON.stringify(skipped));
      assert.equal(skipped[0]!.step, 5);
      assert.match(skipped[0]!.reason as string, new RegExp(`tower 0 of worker rank ${worker}`));
    }
    assertSameState((await checkpointIn(join(tmp, 'nan-one'))).tensors, (await checkpointIn(join(tmp, 'nan-two'))).tensors, '2 servers vs 1, one update skipped');
  });

  it('2 servers, 2 workers: the reported staleness is the largest over the servers and within maxStaleness', { timeout: 300_000 }, async () => {
    const events = await run(2, 2, { devices: 'cpu:0', hidden: 32, steps: 120, lr: 0.05, maxStaleness: 1, everyStep: true });
    const steps = of(events[0]!, 'step');
    assert.equal(steps.length, 120);
    const worst = Math.max(...steps.map((e) => e.staleness as number));
    console.log(`# largest reported staleness ${worst}`);
    assert.ok(worst <= 1, `staleness ${worst} > maxStaleness 1`);
  });

  it("each update's staleness is the largest over the servers: the lead's own, or the others' the worker relays", async () => {
    // Tower 0's pushes are 1 round stale at the lead and 3 at another server, tower 1's the other way round.
    const at = { lead: [1, 2], others: [3, 0] };
    const o = parseTrainOptions({ mode: 'async', model: mnistMlp(8), optimizer: { type: 'sgd', lr: 0.1 }, data: mnist({ batchSize: 10 }), steps: 4 });
    const tower = (r: number): AsyncTower => ({
      device: `tower ${r}`,
      death: new Promise<Error>(() => {}),
      compute: async (): Promise<Computed> => ({
        pulled: { version: 0, minClock: 0, clock: 0, startMs: 0, endMs: 0 },
        otherStaleness: at.others[r]!,
        loss: 1,
        regLoss: 0,
        normSq: 1,
        timings: { startMs: 0, input: 0, forward: 0, backward: 0, reduce: 0, update: 0, total: 0 },
        pullMs: [0, 0],
      }),
      push: async (): Promise<Applied> => ({ version: ++version, clock: 1, lag: 0, staleness: at.lead[r]!, lr: 0.1, normSq: 1, regLoss: 0, skipped: false, startMs: 0, endMs: 0 }),
      firstNonFinite: async () => undefined,
      release: async () => {},
    });
    let version = 0;
    const steps: StepEvent[] = [];
    const loop = new AsyncLoop({
      o,
      s: { ...asyncSettings(o, 2), maxStaleness: Infinity },
      towers: [tower(0), tower(1)],
      server: { drop: () => {} } as unknown as ServerTower,
      batches: new BatchIndex({ count: 100, batchSize: 10, lastBatch: 'drop', shuffle: false, seed: 1 }),
      totalSteps: 4,
      epochs: 1,
      start: 0,
      checkpoints: { save: async () => undefined } as unknown as AsyncCheckpoints,
      evaluate: false,
      deadlineMs: 10_000,
      faults: undefined,
      stopped: () => false,
      emitStep: (r) => steps.push(r.event),
      emitEvent: () => {},
    });
    assert.equal((await loop.run()).steps, 4);
    assert.equal(steps.length, 4);
    for (const e of steps) assert.equal(e.async!.staleness, e.async!.tower === 0 ? 3 : 2, JSON.stringify(e.async));
  });
});
