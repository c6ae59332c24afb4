// More CPU towers than cores (Note [CPU layout]): by default (layout.extraTowers 'fold') the extra towers' examples
// run on the device threads of the first `cores` towers, and training gives the gradient and weights that the towers
// on their own threads give (the same sums in another order: < 1e-5), with replicas still bit-identical.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createInProcessRuntime } from '../src/advanced.js';
import { blocks, ConfigError, createRuntime, type ModelSpec, type RunEvent } from '../src/index.js';
import type { Runtime, RuntimeOptions } from '../src/runtime.js';
import { describeDefaultLayout, layoutSlots } from '../src/tower-port/layout.js';
import { parseDevices } from '../src/devices.js';
import { relErr } from '../src/reference/relerr.js';
import { sameBits } from './support/runtime.js';

const DIM = 24;
const model: ModelSpec = {
  name: 'tiny',
  input: { shape: [DIM] },
  layers: [
    { type: 'dense', units: 16, activation: 'tanh', kernelInit: { type: 'truncatedNormal', stddev: 0.3 }, l2: 1e-3 },
    { type: 'dense', units: 5, kernelInit: { type: 'truncatedNormal', stddev: 0.3 } },
  ],
};
const optimizer = { type: 'momentum' as const, lr: 0.05, momentum: 0.9 };

async function trained(opts: RuntimeOptions, batch: number, steps: number) {
  const rt: Runtime = await createInProcessRuntime({ ...opts, backend: 'native', reduction: { algorithm: 'ring' }, collectiveTimeoutMs: 10_000 });
  try {
    const events: RunEvent[] = [];
    const run = rt.train({ model, optimizer, data: blocks({ batchSize: batch, count: 240, dim: DIM, seed: 5 }), steps, seed: 11 });
    run.events$.subscribe((e) => events.push(e));
    await run.done;
    return { devices: rt.devices, grads: (await rt.readGradients())[0]!, weights: await rt.readWeights(), events };
  } finally {
    await rt.close();
  }
}

describe("extra towers folded onto the cores (layout.extraTowers 'fold', the default in one process)", () => {
  it('keeps the first `cores` CPU slots by default, leaves other kinds alone, and says so; threads on request or in a group', () => {
    const slots = parseDevices('cpu*4');
    const folded = layoutSlots(slots, { extraTowers: 'fold' }, 2);
    assert.deepEqual(folded.slots.map((s) => s.label), ['cpu:0', 'cpu:1']);
    assert.match(folded.text, /^4 CPU towers asked for on 2 cores: 2 device threads, the batch shared over them .*1 GEMM thread each$/);
    assert.doesNotMatch(folded.text, /the default/);
    const byDefault = layoutSlots(slots, {}, 2);
    assert.deepEqual(byDefault.slots.map((s) => s.label), ['cpu:0', 'cpu:1']);
    assert.match(byDefault.text, /^4 CPU towers asked for on 2 cores: 2 device threads, .*'fold', the default: the 2 extra towers' examples run as part of those threads' shards/);
    assert.equal(describeDefaultLayout(2, 4), byDefault.text, '`towerline topo` prints what a run does');
    assert.equal(describeDefaultLayout(2, 2), '2 CPU towers on 2 cores: 1 GEMM thread each');
    const threads = layoutSlots(slots, { extraTowers: 'threads' }, 2);
    assert.equal(threads.slots.length, 4);
    assert.match(threads.text, /more towers than cores.*\(layout.extraTowers 'threads'\)$/);
    const grouped = layoutSlots(slots, {}, 2, 1, false);
    assert.equal(grouped.slots.length, 4, 'a process group (or the reference backend) does not fold by default');
    assert.match(grouped.text, /more towers than cores, so their device threads time-share the cores$/);
    assert.equal(layoutSlots(slots, { extraTowers: 'fold' }, 8).slots.length, 4, 'nothing to fold when the towers fit');
    const mixed = [{ kind: 'cuda', label: 'cuda:0' }, ...slots];
    assert.deepEqual(layoutSlots(mixed, { extraTowers: 'fold' }, 1).slots.map((s) => s.label), ['cuda:0', 'cpu:0']);
  });

  for (const [batch, layout] of [[32, { cores: 2 }], [30, { extraTowers: 'fold', cores: 2 }]] as const) {
    it(`micro-batched (folded) extra towers give the same gradient as real towers (< 1e-5): 4 towers asked for on 2 cores, batch ${batch}, ${JSON.stringify(layout)}; replicas bit-identical`, async () => {
      const real = await trained({ devices: 'cpu*4', layout: { extraTowers: 'threads', cores: 2 } }, batch, 5);
      const folded = await trained({ devices: 'cpu*4', layout }, batch, 5);
      assert.deepEqual(real.devices, ['cpu:0', 'cpu:1', 'cpu:2', 'cpu:3']);
      assert.deepEqual(folded.devices, ['cpu:0', 'cpu:1']);
      for (const [name, g] of real.grads) {
        const e = relErr(folded.grads.get(name)!, g);
        assert.ok(e < 1e-5, `${name}: gradient rel err ${e}`);
      }
      for (const [name, w] of real.weights[0]!) {
        const e = relErr(folded.weights[0]!.get(name)!, w);
        assert.ok(e < 1e-5, `${name}: weights rel err ${e}`);
      }
      for (const [name, w] of folded.weights[0]!) assert.ok(sameBits(w, folded.weights[1]!.get(name)!), `${name}: tower 1 differs from tower 0`);
      const started = folded.events.find((e) => e.type === 'started');
      assert.ok(started && started.type === 'started' && /4 CPU towers asked for on 2 cores: 2 device threads/.test(started.layout ?? ''), JSON.stringify(started));
    });
  }

  it('through the worker runtime: the started event reports the layout; fold with a process group is refused', async () => {
    const rt = await createRuntime({ devices: 'cpu*3', layout: { cores: 1 } });
    try {
      assert.deepEqual(rt.devices, ['cpu:0']);
      const events: RunEvent[] = [];
      const run = rt.train({ model, optimizer, data: blocks({ batchSize: 12, count: 48, dim: DIM, seed: 5 }), steps: 2, seed: 1 });
      run.events$.subscribe((e) => events.push(e));
      await run.done;
      const started = events.find((e) => e.type === 'started');
      assert.ok(started?.type === 'started' && started.layout?.startsWith('3 CPU towers asked for on 1 core: 1 device thread') && /'fold', the default/.test(started.layout), JSON.stringify(started));
    } finally {
      await rt.close();
    }
    await assert.rejects(
      createRuntime({ devices: 'cpu*2', layout: { extraTowers: 'fold' }, group: { worldSize: 2, rank: 0 } }),
      (e: Error) => e instanceof ConfigError && /layout.extraTowers 'fold' works in one process/.test(e.message),
    );
    await assert.rejects(createRuntime({ devices: 'cpu', layout: { extraTowers: 'some' } as never }), (e: Error) => e instanceof ConfigError && /layout/.test(e.message));
  });
});
