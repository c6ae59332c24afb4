// Thread placement (Note [Thread placement] in src/tower-port/thread-placement.ts): where each compute thread and
// the coordinator run, that the device really pins them, that a run restores the coordinator's mask, and that
// placement never changes the bits.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { placeThreads, PlacementError, type PlacedSlot } from '../src/tower-port/thread-placement.js';
import { native } from '../src/native/addon.js';
import { NativeDevice } from '../src/backend/native-device.js';
import { createRuntime, mnist, type RunEvent } from '../src/runtime.js';
import { mnistMlp } from '../src/model/spec.js';
import { ConfigError } from '../src/errors.js';
import { describeDefaultLayout } from '../src/tower-port/layout.js';

const cpu = (label: string, threads: number): PlacedSlot => ({ label, threads });
const on = (allowed: number[], extra: Partial<Parameters<typeof placeThreads>[1]> = {}) => ({ allowed, supported: true, pin: true, ...extra });

describe('thread placement: the plan', () => {
  it('puts each tower on CPUs of its own, device thread first, and the coordinator where no device thread is', () => {
    const one = placeThreads([cpu('cpu:0', 2)], on([0, 1]));
    assert.deepEqual(one.towers, [[0, 1]]);
    assert.deepEqual(one.coordinator, [1], 'one tower with a GEMM worker: the coordinator shares the worker CPU');
    assert.match(one.text, /^threads pinned: cpu:0 on CPU 0 \(GEMM workers on CPU 1\); the coordinator on CPU 1 during a run/);

    const spare = placeThreads([cpu('cpu:0', 1)], on([0, 1, 2, 3]));
    assert.deepEqual(spare.towers, [[0]]);
    assert.deepEqual(spare.coordinator, [1, 2, 3], 'free CPUs go to the coordinator');

    const two = placeThreads([cpu('cpu:0', 1), cpu('cpu:1', 1)], on([0, 1]));
    assert.deepEqual(two.towers, [[0], [1]]);
    assert.equal(two.coordinator, undefined, 'every CPU runs a device thread: the coordinator is left to the OS');
    assert.match(two.text, /the coordinator left to the OS/);

    const mixed = placeThreads([cpu('cuda:0', 0), cpu('cpu:0', 3)], on([4, 9, 2, 7]));
    assert.deepEqual(mixed.towers, [undefined, [2, 4, 7]], 'CPUs in ascending order; towers not on host threads are not placed');
    assert.deepEqual(mixed.coordinator, [9]);
  });

  it('pins nothing unless layout.pin is true; layout.pin true that cannot be honoured is refused, saying why', () => {
    const dflt = placeThreads([cpu('cpu:0', 2)], on([0, 1], { pin: undefined }));
    assert.deepEqual(dflt.towers, [undefined]);
    assert.equal(dflt.coordinator, undefined);
    assert.match(dflt.text, /^threads not pinned \(the default; layout.pin true pins them\)$/);
    assert.match(placeThreads([cpu('cpu:0', 2)], on([0, 1], { pin: false })).text, /not pinned \(layout.pin false\)/);
    assert.throws(() => placeThreads([cpu('cpu:0', 1), cpu('cpu:1', 1), cpu('cpu:2', 1)], on([0, 1])), (e: unknown) => e instanceof PlacementError && /layout.pin is true, but 3 compute threads on 2 CPUs/.test((e as Error).message));
    assert.throws(() => placeThreads([cpu('cpu:0', 2)], on([], { supported: false })), /layout.pin is true, but this platform has no thread affinity/);
    assert.match(placeThreads([cpu('cuda:0', 0)], on([0, 1])).text, /no CPU tower computes on host threads/);
  });

  it('in a process group pins each process on its local rank\'s share', () => {
    const group = { localRank: 1, localWorldSize: 2 };
    const mine = placeThreads([cpu('cpu:0', 2)], on([0, 1, 2, 3], { group }));
    assert.deepEqual(mine.towers, [[2, 3]]);
    assert.deepEqual(mine.coordinator, [3]);
    assert.throws(() => placeThreads([cpu('cpu:0', 1)], on([0], { group })), /2 processes on this host share 1 CPUs: less than one each/);
  });

  it('`towerline topo` says where --pin would put each default layout\'s threads', () => {
    assert.match(describeDefaultLayout(2, 1, { allowed: [0, 1], supported: true }), /^1 CPU tower on 2 cores: 2 GEMM threads; with --pin \(layout.pin true\): threads pinned: cpu:0 on CPU 0 \(GEMM workers on CPU 1\); the coordinator on CPU 1 during a run/);
    assert.match(describeDefaultLayout(2, 1, { allowed: [], supported: false }), /--pin \(layout.pin true\) refused: layout.pin is true, but this platform has no thread affinity/);
    assert.equal(describeDefaultLayout(2, 1), '1 CPU tower on 2 cores: 2 GEMM threads', 'without the CPUs: the layout alone');
  });

  it('layout.cores keeps to the first cores of the share', () => {
    const p = placeThreads([cpu('cpu:0', 1)], on([0, 1, 2, 3], { cores: 2 }));
    assert.deepEqual(p.towers, [[0]]);
    assert.deepEqual(p.coordinator, [1]);
  });
});

const allowed = native().affinitySupported ? native().threadCpus() : [];
const skipNoAffinity = allowed.length < 2 ? 'needs thread affinity (Linux) and 2 CPUs' : false;

describe('thread placement: the native threads', { skip: skipNoAffinity }, () => {
  it('pins a device thread and its GEMM worker where openDevice says', async () => {
    const [a, b] = [allowed[allowed.length - 1]!, allowed[0]!]; // in reverse, so the default order cannot pass it
    const d = NativeDevice.open('cpu', 0, { gemmThreads: 2, cpus: [a, b] });
    try {
      assert.deepEqual(native().deviceThreadCpus(d.id), [[a], [b]]);
      d.gemmThreads = 3; // another count: the placement no longer applies, the threads get their mask back
      const after = native().deviceThreadCpus(d.id);
      assert.equal(after.length, 3);
      for (const m of after) assert.deepEqual(m, allowed, 'unpinned after a resize');
    } finally {
      await d.close();
    }
    const plain = NativeDevice.open('cpu', 0, { gemmThreads: 2 });
    try {
      for (const m of native().deviceThreadCpus(plain.id)) assert.deepEqual(m, allowed, 'no cpus: not pinned');
    } finally {
      await plain.close();
    }
  });

  it('settles every completion once and in order when spinning GEMM workers deliver them (Note [Hand-off to a spinning worker])', async () => {
    for (const cpus of [[allowed[0]!, allowed[1]!], undefined]) {
      const d = NativeDevice.open('cpu', 0, { gemmThreads: 2, ...(cpus ? { cpus } : {}) });
      try {
        const [B, I, O] = [64, 256, 256];
        const x = d.alloc(B * I, 'f32'), w = d.alloc(I * O, 'f32'), b = d.alloc(O, 'f32'), y = d.alloc(B * O, 'f32');
        const program = d.compile([{ kernel: 'dense_forward', inputs: [x, w, b], outputs: [y], attrs: { B, I, O } }]);
        const order: number[] = [];
        const all: Promise<void>[] = [];
        for (let i = 0; i < 600; i++) {
          // products keep the worker spinning between jobs; syncs settle right after them, handed off to it
          const p = i % 3 === 0 ? d.runWith(program, [], []).then(() => undefined) : d.sync();
          all.push(p.then(() => void order.push(i)));
        }
        await Promise.all(all);
        assert.equal(order.length, 600, 'every completion settled exactly once');
        assert.deepEqual(order, [...order].sort((p, q) => p - q), `completions settled out of order (${cpus ? 'pinned' : 'unpinned'})`);
        d.releaseProgram(program);
      } finally {
        await d.close();
      }
    }
  });

  it("counts the CPUs this process may use, as os.availableParallelism() does: a cpuset is not the whole machine", () => {
    assert.equal(native().machineThreads, availableParallelism());
    // A child limited to one CPU (taskset: the affinity a container's cpuset gives) counts one on both sides.
    const probe = `import { availableParallelism } from 'node:os'; import { native } from ${JSON.stringify(new URL('../src/native/addon.ts', import.meta.url).href)}; console.log(JSON.stringify([native().machineThreads, availableParallelism()]));`;
    const out = execFileSync('taskset', ['-c', String(allowed[1]), process.execPath, '--import', 'tsx', '--input-type=module', '-e', probe], { encoding: 'utf8' });
    assert.deepEqual(JSON.parse(out.trim().split('\n').pop()!), [1, 1]);
  });

  it('refuses bad CPUs naming them, and counts that do not match the threads', () => {
    assert.throws(() => native().openDevice('cpu', 0, { gemmThreads: 2, cpus: [allowed[0]!] }), /cpus of cpu:0: expected one CPU per compute thread .*: 2\), got 1/);
    assert.throws(() => native().openDevice('cpu', 0, { cpus: [-1] }), /openDevice: cpus\[0\]: expected a CPU id/);
    assert.throws(() => native().openDevice('cpu', 0, { cpus: [1023] }), /could not pin this thread to CPUs 1023/);
    assert.equal(native().stats().devices, 0, 'a device that could not be placed is closed');
  });

  it('pins the coordinator for the length of a run, restores it after, and computes the same bits pinned or not', async () => {
    const before = native().threadCpus();
    const weights: Float32Array[][] = [];
    for (const pin of [true, undefined]) {
      const rt = await createRuntime({ devices: 'cpu*1', gemmThreads: 2, ...(pin ? { layout: { pin } } : {}) });
      try {
        const run = rt.train({ model: mnistMlp(), optimizer: { type: 'momentum', lr: 0.01, momentum: 0.9 }, data: mnist({ batchSize: 64 }), steps: 12, seed: 3 });
        const events: RunEvent[] = [];
        const during: number[][] = [];
        run.events$.subscribe((e) => events.push(e));
        run.steps$.subscribe(() => during.push(native().threadCpus()));
        await run.done;
        const started = events.find((e) => e.type === 'started') as Extract<RunEvent, { type: 'started' }>;
        if (pin) {
          assert.match(started.layout ?? '', /threads pinned: cpu:0 on CPU \d+ \(GEMM workers on CPU \d+\); the coordinator on CPU \d+ during a run/);
          const coord = Number(/the coordinator on CPU (\d+)/.exec(started.layout!)![1]);
          assert.ok(during.length > 0 && during.every((m) => m.length === 1 && m[0] === coord), `the coordinator ran on CPU ${coord} during the run: ${JSON.stringify(during.slice(0, 3))}`);
        } else {
          assert.match(started.layout ?? '', /threads not pinned \(the default; layout.pin true pins them\)/);
          assert.ok(during.every((m) => m.length === before.length));
        }
        assert.deepEqual(native().threadCpus(), before, 'the coordinator has its mask back once the run is done');
        weights.push([...(await rt.readWeights())[0]!.values()]);
      } finally {
        await rt.close();
      }
    }
    assert.equal(weights[0]!.length, weights[1]!.length);
    weights[0]!.forEach((w, i) => assert.deepEqual(Buffer.from(w.buffer, w.byteOffset, w.byteLength), Buffer.from(weights[1]![i]!.buffer, weights[1]![i]!.byteOffset, weights[1]![i]!.byteLength), `tensor ${i} differs pinned vs unpinned`));
  });

  it('refuses layout.pin true where the threads outnumber the CPUs, naming the field', async () => {
    await assert.rejects(
      createRuntime({ devices: `cpu*${allowed.length + 1}`, layout: { pin: true, extraTowers: 'threads' } }),
      (e: unknown) => e instanceof ConfigError && e.field === 'layout.pin' && /compute threads on \d+ CPUs/.test(e.message),
    );
  });
});
