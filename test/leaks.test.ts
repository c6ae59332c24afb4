// Resource hygiene: creating and closing 100 runtimes leaks no threads, file descriptors or native memory.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { createRuntime, mnist } from '../src/runtime.js';
import { mnistMlp } from '../src/model/spec.js';
import { native } from '../src/native/addon.js';

const threads = () => readdirSync('/proc/self/task').length;
const fds = () => readdirSync('/proc/self/fd').length;
const rssMb = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))![1]) / 1024;

it('100 runtimes (2 towers each; every 10th trains a step) created and closed: no leaked threads, fds or buffers', async () => {
  // A training cycle uploads MNIST (2 x 47 MB native) into each tower: the test would see any of it left behind.
  const cycle = async (trainStep: boolean) => {
    const rt = await createRuntime({ devices: 'cpu*2' });
    if (trainStep) await rt.train({ model: mnistMlp(16), optimizer: { type: 'sgd', lr: 0.1 }, data: mnist({ batchSize: 32 }), steps: 1 }).done;
    else await rt.readWeights().catch(() => undefined); // a round trip to every actor before closing
    await rt.close();
  };
  for (let i = 0; i < 3; i++) await cycle(true); // warm-up: MNIST cache, code, allocator pools
  global.gc?.();
  const before = { threads: threads(), fds: fds(), rss: rssMb() };
  for (let i = 0; i < 100; i++) await cycle(i % 10 === 0);
  await new Promise((r) => setTimeout(r, 200));
  global.gc?.();
  const after = { threads: threads(), fds: fds(), rss: rssMb() };
  console.log(`# before ${JSON.stringify(before)} after ${JSON.stringify(after)}`);
  const s = native().stats();
  assert.deepEqual({ devices: s.devices, buffers: s.buffers, programs: s.programs, comms: s.comms }, { devices: 0, buffers: 0, programs: 0, comms: 0 });
  assert.ok(after.threads <= before.threads + 2, `threads ${before.threads} -> ${after.threads}`);
  assert.ok(after.fds <= before.fds + 4, `fds ${before.fds} -> ${after.fds}`);
  // Each runtime allocates ~2 x 47 MB of MNIST in native memory and two worker heaps; 100 leaked runtimes would be GBs.
  assert.ok(after.rss - before.rss < 300, `RSS grew ${(after.rss - before.rss).toFixed(0)} MB over 100 runtimes`);
});
