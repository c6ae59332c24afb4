// Two sharded cpu towers form each dense weight's summed gradient from both towers' x and dy in the reduce phase
// (Note [Shared gradients]): the step programs say so, uneven batch splits and the row counts read at run time give the
// unsharded weights, and faults at a formed weight still trip the guard naming the tower and tensor.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createInProcessRuntime } from '../src/advanced.js';
import { blocks, NonFiniteError, type ModelSpec, type OptimizerSpec, type TrainOptions } from '../src/index.js';
import type { Runtime } from '../src/runtime.js';
import type { Backend, Op } from '../src/backend/backend.js';
import { internalsOf } from '../src/coordinator/internals.js';
import { injectFaults } from '../src/testing/faults.js';
import { sameBits } from './support/runtime.js';
import { NativeDevice } from '../src/backend/native-device.js';

const DIM = 24;
const init = { kernelInit: { type: 'truncatedNormal' as const, stddev: 0.3 }, l2: 1e-3 };
// dense_0/kernel [0, 960) is cut by the shard boundary (1205 parameters: ~602 each); dense_1/kernel [1000, 1200) is tower 1's.
const model: ModelSpec = { name: 'tiny', input: { shape: [DIM] }, layers: [
  { type: 'dense', units: 40, activation: 'tanh', biasInit: { type: 'constant', value: 0.1 }, ...init },
  { type: 'dense', units: 5, ...init },
] };
const adam: OptimizerSpec = { type: 'adam', lr: 0.01 };
const data = (batchSize: number) => blocks({ batchSize, count: 240, dim: DIM, seed: 3 });

async function withRt<T>(f: (rt: Runtime, programs: Op[][][]) => Promise<T>): Promise<T> {
  const rt = await createInProcessRuntime({ devices: 'cpu*2', reduction: { algorithm: 'ring' }, collectiveTimeoutMs: 10_000 });
  // Every op list each tower's backend compiles, in order (the step program among them).
  const programs: Op[][][] = [[], []];
  internalsOf(rt).towers.ports.forEach((p, r) => {
    const b = (p as unknown as { backend: Backend }).backend;
    const compile = b.compile.bind(b);
    b.compile = (ops: Op[]) => (programs[r]!.push(ops), compile(ops));
  });
  try {
    return await f(rt, programs);
  } finally {
    await rt.close();
  }
}

async function weights(o: Partial<TrainOptions>): Promise<Map<string, Float32Array>[]> {
  return withRt(async (rt) => {
    await rt.train({ model, optimizer: adam, data: data(30), steps: 30, seed: 4, clipNorm: 0.5, ...o }).done;
    return rt.readWeights();
  });
}

function maxDiff(a: Map<string, Float32Array>, b: Map<string, Float32Array>): number {
  let d = 0;
  for (const [name, x] of a) x.forEach((v, i) => (d = Math.max(d, Math.abs(v - b.get(name)![i]!))));
  return d;
}

describe('dense weight gradients formed from both towers\' factors (Note [Shared gradients])', () => {
  it('dense_grad_norm gives the same bits at any GEMM thread count (chunks cut by shape, sums added in block order)', async () => {
    const dev = NativeDevice.open('cpu', 0);
    try {
      const [B, I, O, at, N] = [32, 700, 900, 123, 700 * 900 - 123 - 45]; // three chunks, partial rows at both ends
      const buf = (n: number, s: number) => {
        const h = dev.alloc(n);
        dev.copyIn(h, Float32Array.from({ length: n }, (_, i) => Math.sin(i * s + s)));
        return h;
      };
      const ins = [buf(N, 0.05), buf(B * I, 0.37), buf(B * O, 0.11), buf(1, 0), buf(B * I, 0.73), buf(B * O, 0.29), buf(1, 0)];
      dev.copyIn(ins[3]!, [B]);
      dev.copyIn(ins[6]!, [B - 3]);
      const outs = [dev.alloc(N), dev.alloc(1), dev.alloc(1)];
      const p = dev.compile([
        { kernel: 'fill', inputs: [], outputs: [outs[1]!], attrs: { N: 1, value: 0 } },
        { kernel: 'fill', inputs: [], outputs: [outs[2]!], attrs: { N: 1, value: 0 } },
        { kernel: 'dense_grad_norm', inputs: ins, outputs: outs, attrs: { N, B, I, O, at, lambda: 0.01 } },
      ]);
      const results: Float32Array[][] = [];
      for (const threads of [1, 3, 2]) {
        dev.gemmThreads = threads;
        await dev.runWith(p, [], []);
        results.push(outs.map((h) => Float32Array.from(dev.copyOut(h))));
      }
      dev.releaseProgram(p);
      for (const r of results.slice(1)) r.forEach((v, k) => assert.ok(sameBits(v, results[0]![k]!), `output ${k} differs across thread counts`));
      assert.ok(results[0]![1]![0]! > 0 && results[0]![2]![0]! > 0, 'the sums were taken');
    } finally {
      await dev.close();
    }
  });

  it('each tower\'s step program: dense_backward without dW, dense_grad_norm at its shard\'s weight pieces, faults on the factors', async () => {
    await withRt(async (rt, programs) => {
      await rt.train({ model, optimizer: adam, data: data(30), steps: 2, seed: 4, shardUpdate: true }).done;
      for (const [r, lists] of programs.entries()) {
        const step = lists.find((ops) => ops.some((o) => o.kernel === '@collective') && ops.some((o) => o.kernel === 'dense_backward'));
        assert.ok(step, `tower ${r} compiled a step program`);
        const backward = step.filter((o) => o.kernel === 'dense_backward');
        assert.equal(backward.length, 2);
        for (const o of backward) assert.equal(o.attrs?.noWeightGrad, 1, `tower ${r}: dense_backward leaves dW to the reduce`);
        const formed = step.filter((o) => o.kernel === 'dense_grad_norm');
        // tower 0: its part of dense_0/kernel; tower 1: the rest of it and dense_1/kernel. Biases stay add_grad_norm.
        assert.equal(formed.length, r === 0 ? 1 : 2, `tower ${r}'s formed pieces`);
        assert.deepEqual(formed.map((o) => o.attrs?.I), r === 0 ? [DIM] : [DIM, 40]);
        assert.equal(step.filter((o) => o.kernel === 'add_grad_norm').length, r === 0 ? 0 : 2, `tower ${r}: its bias pieces still add two gradients`);
        assert.equal(step.filter((o) => o.kernel === '@fault' && o.attrs?.wrap !== undefined).length, 2 + 2 + formed.length, 'gradient, reduce: each weight; received: each own piece');
      }
    });
  });

  it('uneven splits (31 = 16 + 15, and the epoch\'s last batch): the unsharded weights within 1e-6, one copy', async () => {
    const o = { data: data(31), steps: 20 };
    const plain = await weights(o);
    const sharded = await weights({ ...o, shardUpdate: true });
    for (const [name, v] of sharded[0]!) assert.ok(sameBits(v, sharded[1]!.get(name)!), `${name}: replicas differ`);
    const d = maxDiff(sharded[0]!, plain[0]!);
    assert.ok(d < 1e-6, `weights differ by ${d}`);
    assert.ok(maxDiff(sharded[0]!, (await weights({ ...o, steps: 1, shardUpdate: true }))[0]!) > 1e-3, 'training moved the weights');
  });

  for (const [point, rank, index, tensor] of [
    ['reduce', 0, 1100, 'dense_1/kernel'], // tower 0's dy, read by tower 1 (whose shard holds the weight)
    ['received', 1, 1100, 'dense_1/kernel'], // tower 1's own shard, right before its pass
    ['gradient', 1, 900, 'dense_0/kernel'], // the weight cut by the boundary: tower 1's part
  ] as const)
    it(`a NaN at '${point}' on tower ${rank} in a formed weight halts naming cpu:${rank} and ${tensor}`, async () => {
      await withRt(async (rt) => {
        injectFaults(rt, (step, r) => (step === 3 && r === rank ? { at: point, kind: 'nan', index } : undefined));
        const run = rt.train({ model, optimizer: adam, data: data(30), steps: 5, seed: 4, shardUpdate: true });
        const other = `cpu:${1 - rank}`;
        await assert.rejects(run.done, (e: Error) => e instanceof NonFiniteError && /step 3/.test(e.message) && new RegExp(`cpu:${rank}`).test(e.message) && e.message.includes(tensor) && !e.message.includes(other));
      });
    });
});
