// Seed 001's block network (six 1000x1000 sigmoid blocks, mean-of-output loss, Adam 1e-4 / 0.5 / 0.9, clipping by
// global norm 5.0) on 1 and 2 CPU towers: the loss falls, the towers' gradients agree, clipping acts.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { blockNetwork, parseModelSpec } from '../src/model/spec.js';
import { blockTraining } from '../src/model/presets.js';
import { relErr } from '../src/reference/relerr.js';
import { blocks, type StepEvent } from '../src/runtime.js';
import { withRuntime } from './support/runtime.js';


const norm = (g: Map<string, Float32Array>): number => Math.sqrt([...g.values()].reduce((a, v) => a + v.reduce((s, x) => s + x * x, 0), 0));

describe('seed 001: the block network', () => {
  it('is six 1000x1000 sigmoid blocks on 1000 inputs with the mean of the output as the loss', () => {
    const s = parseModelSpec(blockNetwork());
    assert.deepEqual(s.input.shape, [1000]);
    assert.equal(s.layers.length, 6);
    assert.ok(s.layers.every((l) => l.type === 'dense' && l.units === 1000 && l.activation === 'sigmoid'));
    assert.equal(s.loss, 'mean');
    assert.deepEqual(blockTraining(), { optimizer: { type: 'adam', lr: 1e-4, beta1: 0.5, beta2: 0.9 }, clipNorm: 5 });
  });

  it('1 and 2 towers: the same gradient for one step (rel err < 1e-5), and the loss falls over 8 steps', async () => {
    const grads: Array<Map<string, Float32Array>> = [];
    for (const devices of ['cpu:0', 'cpu*2']) {
      await withRuntime(devices, async (rt) => {
        await rt.train({ model: blockNetwork(), ...blockTraining(), data: blocks({ batchSize: 64 }), steps: 1, seed: 4 }).done;
        grads.push((await rt.readGradients())[0]!);
        const events: StepEvent[] = [];
        const run = rt.train({ model: blockNetwork(), ...blockTraining(), data: blocks({ batchSize: 64 }), steps: 8, seed: 4 });
        run.steps$.subscribe((e) => events.push(e));
        await run.done;
        assert.equal(events.length, 8);
        assert.deepEqual(events[0]!.shardSizes, devices === 'cpu:0' ? [64] : [32, 32]);
        const first = events[0]!.loss, last = events[events.length - 1]!.loss;
        assert.ok(last < first - 1e-3, `${devices}: loss ${first} -> ${last} should fall`);
        console.log(`# blocks on ${devices}: loss ${first.toFixed(4)} -> ${last.toFixed(4)} in 8 steps, ${(events.slice(1).reduce((a, e) => a + e.secPerBatch, 0) / 7 * 1000).toFixed(0)} ms/step`);
      });
    }
    for (const [name, g] of grads[0]!) {
      const err = relErr(grads[1]!.get(name)!, g);
      assert.ok(err < 1e-5, `${name}: rel err ${err}`);
    }
  });

  it('clipping by global norm acts on the reduced gradient of 2 towers', async () => {
    await withRuntime('cpu*2', async (rt) => {
      const data = blocks({ batchSize: 64 });
      let unclipped = NaN;
      const run = rt.train({ model: blockNetwork(), ...blockTraining(), data, steps: 1, seed: 4 });
      run.steps$.subscribe((e) => (unclipped = e.gradientNorm!));
      await run.done;
      // Under the threshold: untouched (the reported norm is the norm of what the update used).
      const g5 = await rt.readGradients();
      if (unclipped < 5) assert.ok(Math.abs(norm(g5[0]!) - unclipped) < 1e-4 * unclipped, `norm ${norm(g5[0]!)} vs reported ${unclipped}`);
      // Over the threshold: the update uses the gradient scaled to the clip norm, on every tower alike.
      const clip = unclipped / 10;
      let reported = NaN;
      const run2 = rt.train({ model: blockNetwork(), ...blockTraining(), clipNorm: clip, data, steps: 1, seed: 4 });
      run2.steps$.subscribe((e) => (reported = e.gradientNorm!));
      await run2.done;
      assert.ok(Math.abs(reported - unclipped) < 1e-5 * unclipped, 'the reported norm is before clipping');
      const g = await rt.readGradients();
      for (const tower of g) assert.ok(Math.abs(norm(tower) - clip) < 1e-4 * clip, `clipped norm ${norm(tower)} vs clipNorm ${clip}`);
    });
  });
});
