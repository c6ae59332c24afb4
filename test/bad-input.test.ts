// Every bad input in docs/bad-input.md gets the clear error the table says, and changes nothing; the table and
// these cases are checked against each other.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { createRuntime, mnist } from '../src/runtime.js';
import { parseModelSpec, mnistMlp } from '../src/model/spec.js';
import { Tower } from '../src/model/tower.js';
import { parseIdx } from '../src/data/idx.js';
import { batchPlans } from '../src/data/batches.js';
import { loadCheckpoint } from '../src/io/checkpoint.js';
import { loadMnist } from '../src/data/mnist.js';
import { planReduction } from '../src/scheduler/select.js';
import { ConfigError } from '../src/util/validate.js';
import { openTestDevice } from './support/device.js';
import { describeTable } from './support/doc-table.js';

const dev = openTestDevice();
after(() => dev.close());

const optimizer = { type: 'sgd' as const, lr: 0.1 };

/** id → a function that must throw (or reject); the table in docs/bad-input.md gives the expected excerpt. */
const CASES: Record<string, () => unknown> = {
  'spec-negative-units': () => parseModelSpec({ input: { shape: [784] }, layers: [{ type: 'dense', units: -3 }] }),
  'spec-unknown-layer': () => parseModelSpec({ input: { shape: [784] }, layers: [{ type: 'conv9' }] }),
  'spec-not-object': () => parseModelSpec('mnist'),
  'labels-out-of-range': async () => {
    const t = new Tower(dev, mnistMlp(8), { maxBatch: 4, training: { optimizer } });
    try {
      await t.trainStep({ kind: 'direct', x: new Float32Array(2 * 784), labels: Int32Array.from([0, 10]) }, 0.1, 1);
    } finally {
      t.dispose();
    }
  },
  'input-wrong-shape': async () => {
    const t = new Tower(dev, mnistMlp(8), { maxBatch: 4, training: { optimizer } });
    try {
      await t.trainStep({ kind: 'direct', x: new Float32Array(100), labels: Int32Array.from([0, 1]) }, 0.1, 1);
    } finally {
      t.dispose();
    }
  },
  'input-wrong-type': () => dev.copyIn(dev.alloc(4, 'i32'), new Float32Array([1.5]) as unknown as Int32Array),
  'empty-dataset': () => batchPlans({ count: 0, batchSize: 10, seed: 1, lastBatch: 'keep' }),
  'batch-smaller-than-towers': async () => {
    const rt = await createRuntime({ devices: 'cpu*3', layout: { extraTowers: 'threads' } });
    try {
      await rt.train({ model: mnistMlp(8), optimizer, data: mnist({ batchSize: 2 }), steps: 1 }).done;
    } finally {
      await rt.close();
    }
  },
  'unknown-device-kind': () => createRuntime({ devices: 'gpu:0' }),
  'duplicate-device': () => createRuntime({ devices: 'cpu:0,cpu:0' }),
  'old-device-form': () => createRuntime({ devices: 'cpu:3' }),
  'cpu-all': () => createRuntime({ devices: 'cpu:all' }),
  'empty-device-range': () => createRuntime({ devices: 'cpu:3-1' }),
  'more-devices-than-exist': () => createRuntime({ devices: 'cuda:7' }),
  'unknown-algorithm': () => createRuntime({ devices: 'cpu*2', reduction: { algorithm: 'butterfly' as 'ring' } }),
  'malformed-schedule': () => planReduction({ custom: { name: 'half', plan: () => ({ name: 'half', phases: [[[[0, 1, 0, 2]], []]] }) } }, { ranks: 2, length: 4 }),
  'corrupt-checkpoint': async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tl-bad-'));
    await writeFile(join(dir, 'ckpt-000000001.safetensors'), Buffer.from('not a checkpoint'));
    await writeFile(join(dir, 'ckpt-000000001.json'), '{"format":"towerline-checkpoint"');
    await loadCheckpoint(join(dir, 'ckpt-000000001.json'));
  },
  'mismatched-checkpoint': () => {
    const t = new Tower(dev, mnistMlp(8), { maxBatch: 4, training: { optimizer } });
    try {
      t.writeState(new Map([['dense_0/kernel', new Float32Array(3)]]));
    } finally {
      t.dispose();
    }
  },
  'unreadable-data-file': () => loadMnist('train', '/nonexistent/mnist'),
  'truncated-idx': () => parseIdx(Uint8Array.from([0, 0, 8, 1, 0, 0, 0, 9, 1, 2]), 'labels.idx'),
  'options-wrong-type': () => createRuntime({ devices: 3 } as unknown as { devices: string }),
  'train-options-wrong-type': async () => {
    const rt = await createRuntime({ devices: 'cpu:0' });
    try {
      rt.train({ model: mnistMlp(8), optimizer, data: mnist({ batchSize: 32 }), steps: '10' as unknown as number });
    } finally {
      await rt.close();
    }
  },
};

async function errorOf(f: () => unknown): Promise<Error> {
  try {
    await f();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected an error, none was thrown');
}

describeTable(
  'bad input: clear errors (docs/bad-input.md)',
  'bad-input.md',
  Object.fromEntries(
    Object.entries(CASES).map(([id, f]) => [
      id,
      async () => {
        const e = await errorOf(f);
        assert.ok(e instanceof Error, `${id} threw a non-Error`);
        return e.message;
      },
    ]),
  ),
);

describe('fuzzing the model-spec validator', () => {
  it('random JSON: parseModelSpec returns a spec or throws ConfigError, nothing else', () => {
    const layer = fc.oneof(
      fc.record({ type: fc.constantFrom('dense', 'relu', 'flatten', 'conv', 7), units: fc.oneof(fc.integer({ min: -5, max: 50 }), fc.double(), fc.string()) }, { requiredKeys: [] }),
      fc.jsonValue(),
    );
    fc.assert(
      fc.property(fc.record({ input: fc.oneof(fc.record({ shape: fc.array(fc.integer({ min: -2, max: 30 }), { maxLength: 3 }) }), fc.jsonValue()), layers: fc.oneof(fc.array(layer, { maxLength: 4 }), fc.jsonValue()), loss: fc.oneof(fc.constantFrom('softmaxCrossEntropy', 'mean', 'hinge'), fc.jsonValue()) }, { requiredKeys: [] }), (spec) => {
        try {
          const s = parseModelSpec(spec);
          assert.ok(s.layers.length >= 1);
        } catch (e) {
          if (!(e instanceof ConfigError)) throw e;
        }
      }),
      { numRuns: 1000, seed: 7 },
    );
  });
});
