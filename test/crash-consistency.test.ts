// Crash consistency (issue 13): the real CLI SIGKILLed at random moments (during start-up, between steps, while a
// checkpoint is written) and resumed each time ends bit-identical to an uninterrupted run. And two runtimes training
// at once in one process (each with its own GEMM threads) give the same weights as each run alone.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRuntime, mnist, type RuntimeOptions } from '../src/runtime.js';
import { mnistMlp } from '../src/model/spec.js';
import { loadCheckpoint } from '../src/io/checkpoint.js';
import { Rng } from '../src/util/rng.js';
import { towerline } from './support/cli.js';
import { sameBits } from './support/runtime.js';

const STEPS = 40;
const args = (dir: string) => ['train', '--devices', 'cpu*2', '--batch-size', '32', '--steps', String(STEPS), '--seed', '5', '--ema', '0.9', '--checkpoint-every', '2', '--log-every', '1', '--checkpoint-dir', dir, '--resume-if-present'];

describe('crash consistency', () => {
  it('SIGKILL at 10+ random moments, resuming each time: the final state equals an uninterrupted run bit for bit', async () => {
    const base = await mkdtemp(join(tmpdir(), 'tl-crash-'));
    const seed = Number(process.env.TL_CRASH_SEED ?? Date.now() % 100_000);
    const rng = new Rng(seed);
    const full = await towerline(args(join(base, 'full')));
    assert.equal(full.code, 0, full.err);

    const dir = join(base, 'killed');
    const kills: string[] = [];
    for (let attempt = 0; attempt < 40 && kills.length < 10; attempt++) {
      // A random moment: a random delay after a random step line in the first half (0: during start-up, before
      // any step line), or at once after a resume that is already past it. Each kill keeps what its run saved.
      const at = Math.floor(rng.next() * (STEPS / 2));
      const delayMs = Math.floor(rng.next() * 25);
      let killed = false;
      const r = await towerline(
        args(dir),
        (line, child) => {
          const m = /^step (\d+),/.exec(line);
          if (!killed && at > 0 && m && Number(m[1]) >= at) {
            killed = true;
            setTimeout(() => child.kill('SIGKILL'), delayMs);
          }
        },
        (child) => {
          if (at === 0) setTimeout(() => child.kill('SIGKILL'), delayMs * 40); // during start-up (0-1 s after spawn)
        },
      );
      if (r.signal === 'SIGKILL') kills.push(`${at === 0 ? `${delayMs * 40} ms after spawn` : `after step ${at} + ${delayMs} ms`}`);
      else {
        assert.equal(r.code, 0, `seed ${seed}: a resumed run failed:\n${r.err}`);
        await rm(dir, { recursive: true, force: true }); // it outran the kill: start over, so every kill is counted
        kills.length = 0;
      }
    }
    assert.ok(kills.length >= 10, `seed ${seed}: ${kills.length} kills`);
    const last = await towerline(args(dir));
    assert.equal(last.code, 0, `seed ${seed}: the final resume failed:\n${last.err}`);
    const a = await loadCheckpoint(join(base, 'full'));
    const b = await loadCheckpoint(dir);
    assert.equal(b.step, STEPS);
    assert.deepEqual(b.state.next, a.state.next);
    assert.deepEqual([...b.tensors.keys()].sort(), [...a.tensors.keys()].sort());
    for (const [name, t] of a.tensors) assert.ok(sameBits(t.data, b.tensors.get(name)!.data), `seed ${seed} (kills: ${kills.join('; ')}): ${name} differs`);
  });
});

describe('two runtimes in one process', () => {
  const train = async (o: RuntimeOptions, seed: number) => {
    const rt = await createRuntime(o);
    try {
      await rt.train({ model: mnistMlp(64), optimizer: { type: 'momentum', lr: 0.05, momentum: 0.9 }, data: mnist({ batchSize: 64 }), steps: 12, seed }).done;
      return (await rt.readWeights())[0]!;
    } finally {
      await rt.close();
    }
  };

  it('training concurrently (one on 1 GEMM thread per tower, one on 3) gives the same weights as each run alone', async () => {
    const a = { devices: 'cpu*2', gemmThreads: 1 };
    const b = { devices: 'cpu*2', gemmThreads: 3 };
    const [togetherA, togetherB] = await Promise.all([train(a, 1), train(b, 2)]);
    const aloneA = await train(a, 1);
    const aloneB = await train(b, 2);
    const otherThreads = await train({ devices: 'cpu*2', gemmThreads: 2 }, 1);
    for (const [name, w] of aloneA) {
      assert.ok(sameBits(w, togetherA.get(name)!), `run A: ${name} differs when another runtime trains at the same time`);
      assert.ok(sameBits(w, otherThreads.get(name)!), `run A: ${name} differs on another GEMM thread count`);
    }
    for (const [name, w] of aloneB) assert.ok(sameBits(w, togetherB.get(name)!), `run B: ${name} differs when another runtime trains at the same time`);
    assert.ok(!sameBits(aloneA.get('dense_0/kernel')!, aloneB.get('dense_0/kernel')!), 'the two runs differ (other seeds), so the check can fail');
  });
});
