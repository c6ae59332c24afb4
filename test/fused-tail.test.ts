// The fused per-parameter tail (Note [Fused parameter tail]) on the test device gives the same bits as the unfused
// kernels it replaces, run in sequence on the same inputs; and the tower's op list uses it with the guard in between.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Op } from '../src/backend/backend.js';
import { testRandom } from '../src/reference/relerr.js';
import { buildNetwork } from '../src/model/network.js';
import { TowerMemory } from '../src/model/memory.js';
import { parseModelSpec } from '../src/model/spec.js';
import { parseTrainingOptions } from '../src/model/optimizer.js';
import { localNormOps, loneLocalNormOps, updateOps } from '../src/model/passes.js';
import { openTestDevice } from './support/device.js';
import { sameBits } from './support/runtime.js';
import { TAIL_SIZES } from './support/tail-sizes.js';

const dev = openTestDevice();
after(() => dev.close());

/** Two copies of the same buffers (name -> values); runs `a` on the first set and `b` on the second; same bits after. */
async function sameAfter(init: Record<string, number[]>, a: (h: Record<string, number>) => Op[], b: (h: Record<string, number>) => Op[], what: string) {
  const sets = [0, 1].map(() => Object.fromEntries(Object.entries(init).map(([k, v]) => {
    const h = dev.alloc(v.length);
    dev.copyIn(h, v);
    return [k, h];
  })) as Record<string, number>);
  await dev.runOps(a(sets[0]!));
  await dev.runOps(b(sets[1]!));
  for (const k of Object.keys(init)) {
    const x = dev.copyOut(sets[0]![k]!) as Float32Array, y = dev.copyOut(sets[1]![k]!) as Float32Array;
    const at = x.findIndex((v, i) => !Object.is(v, y[i]));
    assert.ok(sameBits(x, y), `${what}: ${k} differs at ${at}: fused ${x[at]}, unfused ${y[at]}`);
  }
  for (const s of sets) for (const h of Object.values(s)) dev.free(h);
}

const vals = (r: () => number, n: number, lo = -1, hi = 1) => Array.from({ length: n }, () => lo + (hi - lo) * r());

describe(`the fused tail on ${dev.name} equals the unfused kernels bit for bit`, () => {
  for (const N of TAIL_SIZES) {
    it(`l2_grad_norm = l2_backward + sum_squares + l2_loss, N=${N}`, async () => {
      const r = testRandom(N);
      const attrs = { N, lambda: 0.003 };
      await sameAfter(
        { w: vals(r, N), g: vals(r, N, -0.1, 0.1), s: [0.25], loss: [0.5] },
        (h) => [{ kernel: 'l2_grad_norm', inputs: [h.w!], outputs: [h.g!, h.s!, h.loss!], attrs }],
        (h) => [
          { kernel: 'l2_backward', inputs: [h.w!], outputs: [h.g!], attrs },
          { kernel: 'sum_squares', inputs: [h.g!], outputs: [h.s!], attrs: { N } },
          { kernel: 'l2_loss', inputs: [h.w!], outputs: [h.loss!], attrs },
        ],
        `l2_grad_norm N=${N}`,
      );
    });

    it(`l2_grad_norm with local = sum_squares (into local) + l2_backward + sum_squares + l2_loss, N=${N}`, async () => {
      const r = testRandom(3 * N + 1);
      const attrs = { N, lambda: 0.003 };
      await sameAfter(
        { w: vals(r, N), g: vals(r, N, -0.1, 0.1), s: [0.25], loss: [0.5], local: [0.125] },
        (h) => [{ kernel: 'l2_grad_norm', inputs: [h.w!], outputs: [h.g!, h.s!, h.loss!, h.local!], attrs }],
        (h) => [
          { kernel: 'sum_squares', inputs: [h.g!], outputs: [h.local!], attrs: { N } },
          { kernel: 'l2_backward', inputs: [h.w!], outputs: [h.g!], attrs },
          { kernel: 'sum_squares', inputs: [h.g!], outputs: [h.s!], attrs: { N } },
          { kernel: 'l2_loss', inputs: [h.w!], outputs: [h.loss!], attrs },
        ],
        `l2_grad_norm with local N=${N}`,
      );
    });

    const updates: Array<[string, string[], Record<string, number>]> = [
      ['sgd', [], {}],
      ['momentum', ['v'], { momentum: 0.9, nesterov: 0 }],
      ['momentum', ['v'], { momentum: 0.9, nesterov: 1 }],
      ['adam', ['m', 'v'], { beta1: 0.5, beta2: 0.9, epsilon: 1e-8 }],
    ];
    for (const [opt, slots, attrs] of updates) {
      // [clipNorm, global squared norm]: no clipping, clipping that acts, clipping that does not act
      for (const [clipNorm, norm] of [[0, 4], [0.5, 4], [5, 4]] as const) {
        for (const decay of [0, 0.99]) {
          it(`fused_${opt}_update ${JSON.stringify({ N, ...attrs, clipNorm, decay })} = ${clipNorm ? 'clip_by_norm + ' : ''}${opt}_update${decay ? ' + ema_update' : ''}`, async () => {
            const r = testRandom(7 * N + clipNorm);
            const init: Record<string, number[]> = { s: [norm], hyper: [0.05, 3, 0.125, 0, 0, 0, 0, 0], g: vals(r, N, -0.1, 0.1), w: vals(r, N) };
            for (const k of slots) init[k] = k === 'v' && opt === 'adam' ? vals(r, N, 1e-4, 1e-2) : vals(r, N, -0.1, 0.1);
            if (decay) init.shadow = vals(r, N);
            await sameAfter(
              init,
              (h) => [{
                kernel: `fused_${opt}_update`,
                inputs: [h.s!, h.hyper!],
                outputs: [h.g!, h.w!, ...slots.map((k) => h[k]!), ...(decay ? [h.shadow!] : [])],
                attrs: { N, ...attrs, clipNorm, decay },
              }],
              (h): Op[] => [
                ...(clipNorm ? [{ kernel: 'clip_by_norm', inputs: [h.s!], outputs: [h.g!], attrs: { N, clipNorm } }] : []),
                { kernel: `${opt}_update`, inputs: [h.g!, h.hyper!], outputs: [h.w!, ...slots.map((k) => h[k]!)], attrs: { N, ...attrs } },
                ...(decay ? [{ kernel: 'ema_update', inputs: [h.w!], outputs: [h.shadow!], attrs: { N, decay } }] : []),
              ],
              `fused_${opt}_update N=${N}`,
            );
          });
        }
      }
    }
  }

  it('rejects a shadow output with a decay outside (0, 1) and a negative clip norm, naming the attribute', () => {
    const b = [dev.alloc(1), dev.alloc(8), dev.alloc(4), dev.alloc(4), dev.alloc(4)];
    try {
      assert.throws(
        () => dev.compile([{ kernel: 'fused_sgd_update', inputs: [b[0]!, b[1]!], outputs: [b[2]!, b[3]!, b[4]!], attrs: { N: 4, clipNorm: 0, decay: 0 } }]),
        (e: Error) => /fused_sgd_update/.test(e.message) && /decay must be in \(0, 1\) with a shadow output/.test(e.message),
      );
      assert.throws(
        () => dev.compile([{ kernel: 'fused_sgd_update', inputs: [b[0]!, b[1]!], outputs: [b[2]!, b[3]!], attrs: { N: 4, clipNorm: -1, decay: 0 } }]),
        (e: Error) => /fused_sgd_update/.test(e.message) && /clipNorm/.test(e.message),
      );
    } finally {
      b.forEach((h) => dev.free(h));
    }
  });
});

describe('the tower update tail', () => {
  it('is one norm op per parameter, the guard on the whole norm, then one fused update per parameter', () => {
    const mem = new TowerMemory(dev);
    try {
      const spec = parseModelSpec({
        name: 'tail',
        input: { shape: [6] },
        layers: [{ type: 'dense', units: 4, activation: 'relu', l2: 1e-3 }, { type: 'dense', units: 3 }],
      });
      const t = parseTrainingOptions({ optimizer: { type: 'adam', lr: 0.01 }, clipNorm: 5, emaDecay: 0.99 });
      const net = buildNetwork(spec, mem, 4, { slots: 2, ema: true });
      const ops = updateOps(net, t);
      const guard = ops.findIndex((o) => o.kernel === '@guard');
      assert.deepEqual(ops.slice(2, guard).map((o) => o.kernel), ['l2_grad_norm', 'sum_squares', 'sum_squares', 'sum_squares']);
      assert.deepEqual(ops[guard]!.inputs, [net.buffers.normSq]);
      assert.ok(ops.slice(2, guard).every((o) => o.outputs.includes(net.buffers.normSq)), 'every norm op adds into the guarded norm');
      assert.deepEqual(ops.slice(guard + 1).map((o) => o.kernel), Array(4).fill('fused_adam_update'));
      assert.ok(ops.slice(guard + 1).every((o) => o.inputs[0] === net.buffers.normSq && o.attrs!.clipNorm === 5 && o.attrs!.decay === 0.99));
      // nothing writes a weight before the guard
      const weights = new Set(net.params.map((p) => p.w));
      assert.ok(ops.slice(0, guard).every((o) => !o.outputs.some((h) => weights.has(h))));
      // a lone tower (Note [Lone tower's local norms]): the L2 parameter's local norm comes from its pass-1 op; the
      // others' only after a trip (loneLocalNormOps), so the step has the fills alone
      const lone = updateOps(net, t, true);
      assert.deepEqual(lone.slice(2, guard).map((o) => o.outputs.slice(3)), [[net.params[0]!.localNormSq], [], [], []]);
      const fills = localNormOps(net, net.params, true);
      assert.deepEqual(fills.map((o) => o.kernel), ['fill', 'fill', 'fill', 'fill']);
      assert.deepEqual(fills.map((o) => o.outputs[0]), net.params.map((p) => p.localNormSq));
      const after = loneLocalNormOps(net);
      assert.deepEqual(after.map((o) => o.kernel), ['fill', 'sum_squares', 'fill', 'sum_squares', 'fill', 'sum_squares']);
      assert.deepEqual(after.filter((o) => o.kernel === 'sum_squares').map((o) => [o.inputs[0], o.outputs[0]]), net.params.slice(1).map((p) => [p.g, p.localNormSq]));
    } finally {
      mem.free();
    }
  });
});
