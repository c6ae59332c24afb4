// The all-reduce overlapped with backward, bucket by bucket (Note [Overlapped all-reduce] in
// cpp/collective/overlap.h): the bucket plan is a pure partition of the arena; with overlap on, 2 processes × 1 and
// 2 CPU towers over a directory store give one device's whole-batch gradient and the same weights as with overlap
// off after 20 steps (bit for bit: with 2 processes × at most 2 towers every element's sum adds two terms at each
// level, and a + b == b + a in IEEE arithmetic, so how the buckets cut the arena cannot change a bit); replicas stay
// bit-identical across processes; the non-finite guard still names the tower whose local gradient went bad; a
// tower failing in backward, and a rank killed mid-run, fail the others fast naming it.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRuntime, mnist } from '../src/runtime.js';
import { mnistMlp } from '../src/model/spec.js';
import { NonFiniteError } from '../src/errors.js';
import { relErr } from '../src/reference/relerr.js';
import { planBuckets } from '../src/scheduler/buckets.js';
import { injectFaults } from '../src/testing/faults.js';
import { native } from '../src/native/addon.js';
import { killAll, spawnChild, tempStore, type Rank, type RankEvent } from './support/ranks.js';
import type { TrainChildArgs } from './support/train-child.js';

let runs = 0;
const runId = () => `ov${process.pid}-${++runs}`;
const tmp = mkdtempSync(join(tmpdir(), 'towerline-ov-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

const model = mnistMlp(64); // dense_0/kernel 50176, dense_0/bias 64, dense_1/kernel 640, dense_1/bias 10 (packed in that order)
const DENSE1_KERNEL = 784 * 64 + 64;
const optimizer = { type: 'momentum' as const, lr: 0.05, momentum: 0.9 };

describe('the bucket plan (Note [Bucket plan])', () => {
  const params = [
    { name: 'a', offset: 0, numel: 1000 },
    { name: 'b', offset: 1000, numel: 10 },
    { name: 'c', offset: 1010, numel: 200 },
    { name: 'd', offset: 1210, numel: 5 },
  ];
  it('takes parameters in reverse order under the byte cap and partitions the whole arena', () => {
    assert.deepEqual(planBuckets(params, 1215, 830), [
      { offset: 1010, length: 205, params: ['d', 'c'] }, // 820 bytes; b's 40 more would pass the cap
      { offset: 1000, length: 10, params: ['b'] },
      { offset: 0, length: 1000, params: ['a'] }, // larger than the cap: a bucket of its own
    ]);
    assert.deepEqual(planBuckets(params, 1215, 1 << 20), [{ offset: 0, length: 1215, params: ['d', 'c', 'b', 'a'] }]);
    for (const cap of [4, 40, 900, 4100, 5000]) {
      const b = planBuckets(params, 1215, cap);
      assert.equal(b.reduce((n, x) => n + x.length, 0), 1215, `cap ${cap}: every element in one bucket`);
      b.forEach((x, k) => assert.equal(x.offset + x.length, k === 0 ? 1215 : b[k - 1]!.offset, `cap ${cap}: contiguous`));
    }
    assert.throws(() => planBuckets(params, 1215, 2), /bucketBytes: expected an integer of at least 4/);
  });
});

describe('overlap in one process (2 and 3 CPU towers)', () => {
  const data = mnist({ batchSize: 64 });
  it('bucketBytes without overlap is refused before step 1, naming the field and the fix', async () => {
    const rt = await createRuntime({ devices: 'cpu*2' });
    try {
      assert.throws(() => rt.train({ model, optimizer, data, steps: 2, bucketBytes: 1024 }), (e: Error) => /bucketBytes/.test(e.message) && /overlap: true/.test(e.message) && /--overlap/.test(e.message));
    } finally {
      await rt.close();
    }
  });

  it("the bucket cut is part of the run's layout: a checkpoint records it, and resuming without overlap says the bits change", { timeout: 120_000 }, async () => {
    const dir = join(tmp, 'layout');
    const layouts: string[] = [];
    for (const overlap of [true, false]) {
      const rt = await createRuntime({ devices: 'cpu*3' });
      try {
        const o = overlap ? { overlap, bucketBytes: 1024 } : {};
        const run = rt.train({ model, optimizer, data, steps: overlap ? 2 : 3, seed: 5, ...o, checkpoint: { dir, everySteps: 1, resume: !overlap } });
        const warnings: string[] = [];
        run.events$.subscribe((e) => e.type === 'warning' && warnings.push(e.message));
        await run.done;
        const side = JSON.parse(readFileSync(join(dir, `ckpt-${String(overlap ? 2 : 3).padStart(9, '0')}.json`), 'utf8'));
        layouts.push(side.state.settings.layout.reduction);
        if (!overlap) assert.ok(warnings.some((w) => /reduction: saved .*overlap, 4 buckets/.test(w) && /changes the bits/.test(w)), `resume warns: ${warnings.join(' | ')}`);
      } finally {
        await rt.close();
      }
    }
    assert.match(layouts[0]!, /; overlap, 4 buckets: \[\d+\+\d+\]/);
    assert.doesNotMatch(layouts[1]!, /overlap/);
  });

  it("a tower stalled before its all-reduce: the other tower's idle is its wait for it, with overlap on as off", async () => {
    for (const overlap of [false, true]) {
      const rt = await createRuntime({ devices: 'cpu*2', layout: { extraTowers: 'threads' } });
      try {
        injectFaults(rt, (step, t) => (step === 3 && t === 1 ? { at: 'forward', kind: 'stall', ms: 150 } : undefined));
        const run = rt.train({ model, optimizer, data, steps: 4, seed: 5, overlap, ...(overlap ? { bucketBytes: 1024 } : {}) });
        const idle = new Map<number, number[]>();
        run.steps$.subscribe((e) => idle.set(e.step, e.towers.map((t) => t.idle)));
        await run.done;
        const [waited, stalled] = idle.get(3)!;
        // Tower 0 reaches the first bucket (or the all-reduce) 150 ms before tower 1 and waits there; the deadline
        // of a stall is a lower bound, so no upper bound is asserted.
        assert.ok(waited! >= 120, `overlap ${overlap}: tower 0 waited ${waited} ms for the stalled tower 1 (idle at step 3: ${idle.get(3)})`);
        assert.ok(stalled! < waited!, `overlap ${overlap}: the stalled tower waited less (${stalled} ms) than the other (${waited} ms)`);
      } finally {
        await rt.close();
      }
    }
  });

  it('3 towers: one communicator per bucket; 20 steps stay within 1e-6 of overlap off, replicas bit-identical', { timeout: 120_000 }, async () => {
    const weights = async (overlap: boolean) => {
      const rt = await createRuntime({ devices: 'cpu*3', layout: { extraTowers: 'threads' } });
      try {
        const run = rt.train({ model, optimizer, data, steps: 20, seed: 5, overlap, ...(overlap ? { bucketBytes: 1024 } : {}) });
        let comms = -1;
        run.steps$.subscribe((e) => e.step === 1 && (comms = native().stats().comms));
        await run.done;
        assert.equal(comms, overlap ? 2 + 4 : 2, 'the gradient and weight communicators, and with overlap one per bucket (4 at 1 KiB)');
        assert.equal((await rt.checkReplicas()).consistent, true);
        return (await rt.readWeights())[0]!;
      } finally {
        await rt.close();
      }
    };
    const off = await weights(false);
    const on = await weights(true);
    // Three towers: the local ring adds three terms, and the bucket boundaries change which tower adds first for
    // some elements, so the bits may differ (not the value, beyond float32 rounding).
    for (const [name, w] of off) {
      const d = Math.max(...w.map((v, i) => Math.abs(v - on.get(name)![i]!)));
      assert.ok(d < 1e-6, `${name}: max |on - off| = ${d}`);
    }
  });

  it("the non-finite guard names the tower whose local gradient went bad, in a bucket reduced during backward", { timeout: 120_000 }, async () => {
    const rt = await createRuntime({ devices: 'cpu*2' });
    try {
      injectFaults(rt, (step, t) => (step === 2 && t === 1 ? { at: 'gradient', kind: 'nan', index: DENSE1_KERNEL + 5 } : undefined));
      const run = rt.train({ model, optimizer, data, steps: 4, seed: 3, overlap: true, bucketBytes: 1024 });
      await assert.rejects(run.done, (e: Error) => e instanceof NonFiniteError && /step 2/.test(e.message) && /cpu:1: gradient of 'dense_1\/kernel'/.test(e.message) && !/cpu:0/.test(e.message));
      const w = await rt.readWeights();
      for (const [name, v] of w[0]!) assert.ok(v.every(Number.isFinite) && Buffer.compare(Buffer.from(v.buffer), Buffer.from(w[1]!.get(name)!.buffer)) === 0, `${name}: no tower applied the update`);
    } finally {
      await rt.close();
    }
  });

  it('a tower that fails in backward stops the other tower at once (it waits in a bucket it started), naming the tower', { timeout: 120_000 }, async () => {
    const rt = await createRuntime({ devices: 'cpu*2', collectiveTimeoutMs: 60_000 });
    try {
      injectFaults(rt, (step, t) => (step === 2 && t === 1 ? { at: 'backward', kind: 'throw' } : undefined));
      const t0 = Date.now();
      const run = rt.train({ model, optimizer, data, steps: 4, seed: 3, overlap: true, bucketBytes: 1024 });
      await assert.rejects(run.done, (e: Error) => /cpu:1/.test(e.message) && /injected fault/.test(e.message));
      assert.ok(Date.now() - t0 < 30_000, `failed after ${Date.now() - t0} ms (the collective deadline is 60 s)`);
    } finally {
      await rt.close();
    }
  });
});

// ---- across processes (test/support/train-child.ts, as test/multi-process.test.ts) --------------------------------

type Base = Omit<TrainChildArgs, 'group'> & { group: Omit<NonNullable<TrainChildArgs['group']>, 'rank'> };

async function withRanks<T>(worldSize: number, base: Base, f: (ranks: Rank[]) => Promise<T>): Promise<T> {
  const ranks = Array.from({ length: worldSize }, (_, rank) => spawnChild('train-child.ts', rank, { ...base, group: { ...base.group, rank, worldSize } }));
  try {
    return await f(ranks);
  } finally {
    killAll(ranks);
    await Promise.all(ranks.map((r) => r.exited));
  }
}

const each = (ranks: Rank[], name: string, ms = 150_000): Promise<RankEvent[]> => Promise.all(ranks.map((r) => r.next(name, ms)));

let reference: Map<string, Float32Array> | undefined;
async function singleDeviceGradient(): Promise<Map<string, Float32Array>> {
  const rt = await createRuntime({ devices: 'cpu:0' });
  try {
    await rt.train({ model, optimizer, data: mnist({ batchSize: 128 }), steps: 1, seed: 11 }).done;
    return (await rt.readGradients())[0]!;
  } finally {
    await rt.close();
  }
}

/** 2 processes × `towers`: checks the gradient and bit-identical replicas; returns every replica's weight hash. */
async function twoProcesses(towers: number, extra: Partial<TrainChildArgs>): Promise<string[]> {
  const out = join(tmp, `grad-${++runs}`);
  mkdirSync(out);
  reference ??= await singleDeviceGradient();
  const store = tempStore();
  try {
    const base: Base = { scenario: 'equivalence', devices: `cpu*${towers}`, group: { runId: runId(), rdzv: store.url }, steps: 20, out, ...extra };
    return await withRanks(2, base, async (ranks) => {
      const grads = await each(ranks, 'gradients');
      assert.equal(new Set(grads.flatMap((g) => g.hashes as string[])).size, 1, 'every tower of every process holds the same reduced gradient bits');
      for (const [r, g] of grads.entries()) {
        const bytes = readFileSync(join(out, `grad-${r}.bin`));
        const all = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
        let off = 0;
        const got = new Map((g.names as string[]).map((n, i) => [n, all.subarray(off, (off += (g.sizes as number[])[i]!))]));
        for (const [name, want] of reference!) {
          const err = relErr(got.get(name)!, want);
          assert.ok(err < 1e-5, `rank ${r}, ${name}: rel err ${err} against one device's whole-batch gradient`);
        }
      }
      const hashes = (await each(ranks, 'weights')).flatMap((w) => w.hashes as string[]);
      assert.equal(hashes.length, 2 * towers);
      assert.equal(new Set(hashes).size, 1, 'after 20 steps every replica of every process is bit-identical');
      await each(ranks, 'closed', 30_000);
      assert.deepEqual(ranks.flatMap((r) => r.events.filter((e) => e.event === 'error')), []);
      return hashes;
    });
  } finally {
    store.remove();
  }
}

for (const towers of [1, 2]) {
  describe(`2 processes × ${towers} CPU tower${towers > 1 ? 's' : ''} over a directory store, overlap on`, () => {
    it('one step equals one device on the whole batch; after 20 steps the weights equal the overlap-off run bit for bit on every replica', { timeout: 300_000 }, async () => {
      // 1 KiB buckets: dense_1/bias, dense_1/kernel, dense_0/bias and dense_0/kernel each reduced on their own.
      const on = await twoProcesses(towers, { overlap: true, bucketBytes: 1024 });
      const off = await twoProcesses(towers, { overlap: false });
      assert.equal(on[0], off[0], 'overlap on and off give the same weights (every sum here has two terms: Note at the top of this file)');
    });
  });
}

describe('a rank killed mid-run with overlap on', () => {
  it('fails the other rank fast, naming the dead rank', { timeout: 180_000 }, async (t) => {
    const store = tempStore();
    try {
      const base: Base = { scenario: 'train', devices: 'cpu:0', group: { runId: runId(), rdzv: store.url, timeoutMs: 60_000 }, steps: 2000, overlap: true, bucketBytes: 1024 };
      await withRanks(2, base, async (ranks) => {
        await new Promise<void>((resolve, reject) => {
          const timer = setInterval(() => {
            if (ranks[1]!.events.some((e) => e.event === 'step' && (e.step as number) >= 3)) {
              clearInterval(timer);
              resolve();
            } else if (ranks[1]!.proc.exitCode !== null) {
              clearInterval(timer);
              reject(new Error(`rank 1 exited before step 3: ${ranks[1]!.stderr()}`));
            }
          }, 20);
        });
        const killedAt = Date.now();
        ranks[1]!.proc.kill('SIGKILL');
        const e = await ranks[0]!.next('error', 60_000);
        t.diagnostic(`rank 0: ${e.message as string}`);
        assert.match(e.message as string, /rank 1\b/);
        const late = (e.at as number) - killedAt;
        assert.ok(late < 20_000, `rank 0 failed ${late} ms after rank 1 was killed (its deadline is 60 s)`);
        const closed = await ranks[0]!.next('closed', 30_000);
        assert.ok((closed.closeMs as number) < 10_000, 'close() returns');
      });
    } finally {
      store.remove();
    }
  });
});
