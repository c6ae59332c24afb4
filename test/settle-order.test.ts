// Device work queued back to back (Note [Wake-ups in idle time] in cpp/idle_work.h): a task's completion may be put
// off to the device thread's idle time while more work is queued, so these check that every promise still settles,
// once, in the order its work was queued, with and without a GEMM worker to take the wake-up, and when the device
// closes with work queued; and, for a device thread that spins for its next task when its queue runs dry (Note [Spin
// for the next task] in cpp/task_queue.h), that work queued during the spin, and after it, runs, and that the device
// closes while its thread spins.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { native } from '../src/native/addon.js';

const nat = native();
const opened: number[] = [];
after(() => opened.forEach((d) => nat.closeDevice(d)));

/** Queues `n` sync() calls on `dev` at once; resolves with the order their promises settled in. */
async function settleOrder(dev: number, n: number): Promise<number[]> {
  const order: number[] = [];
  await Promise.all(Array.from({ length: n }, (_, i) => nat.sync(dev).then(() => order.push(i))));
  return order;
}

describe('completions of queued device work', () => {
  for (const gemmThreads of [1, 2]) {
    it(`settle every one, in queue order (gemmThreads ${gemmThreads})`, { timeout: 30_000 }, async () => {
      const dev = nat.openDevice('cpu', 60 + gemmThreads, { gemmThreads }).id;
      opened.push(dev);
      for (let round = 0; round < 5; round++) {
        const order = await settleOrder(dev, 400);
        assert.deepEqual(order, Array.from({ length: 400 }, (_, i) => i), `round ${round}: settled out of order or lost`);
      }
    });
  }

  it('settle when the device closes with work still queued', { timeout: 30_000 }, async () => {
    const dev = nat.openDevice('cpu', 70, { gemmThreads: 1 }).id;
    const settled: string[] = [];
    const all = Array.from({ length: 200 }, () =>
      nat.sync(dev).then(
        () => settled.push('ok'),
        (e: Error) => settled.push(`error: ${e.message}`),
      ),
    );
    nat.closeDevice(dev);
    await Promise.all(all);
    assert.equal(settled.length, 200);
    assert.ok(settled.every((s) => s === 'ok'), `work queued before close runs: ${settled.find((s) => s !== 'ok')}`);
  });

  it('run work queued while the device thread spins for it and after it sleeps, and close while it spins', { timeout: 30_000 }, async () => {
    const dev = nat.openDevice('cpu', 71, { gemmThreads: 1 }).id;
    const x = nat.alloc(dev, 4, 'f32'), y = nat.alloc(dev, 4, 'f32');
    nat.write(x, Float32Array.from([1, 1, 1, 1]));
    const p = nat.compile(dev, [{ kernel: 'axpy', inputs: [x], outputs: [y], attrs: { N: 4, alpha: 1 } }]);
    let runs = 0;
    for (let i = 0; i < 600; i++) {
      await nat.run(p);  // the next call comes while the thread spins ...
      runs++;
      if (i % 40 === 39) await new Promise((res) => setTimeout(res, 1 + (i % 3)));  // ... or after it has gone to sleep
    }
    assert.deepEqual(Array.from(nat.read(y) as Float32Array), [runs, runs, runs, runs], 'every run ran once');
    const last = nat.run(p).then(() => 'ok', (e: Error) => `error: ${e.message}`);
    nat.releaseProgram(p);
    nat.closeDevice(dev);  // its thread is spinning, or about to
    assert.equal(await last, 'ok');
  });
});
