// Changing the reduction on every step while training runs (Note [Schedule changes] in
// cpp/collective/communicator.h): ring -> tree -> naive -> a custom schedule -> ..., from a steps$ subscriber, for a
// few hundred steps on 3 CPU towers. Every run finishes all its steps and the replicas stay bit-identical. Only the
// public runtime API is used (createRuntime, train, setReduction, checkReplicas).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createRuntime, mnist, mnistMlp } from '../src/index.js';

/** A user strategy written from scratch: tower 0 sums everyone's gradient, then every other tower copies it. */
const star = {
  name: 'star',
  plan: ({ ranks, length }: { ranks: number; length: number }) => ({
    name: 'star',
    phases: [
      Array.from({ length: ranks }, (_, r) => (r === 0 ? Array.from({ length: ranks - 1 }, (_, p) => [0, p + 1, 0, length]) : [])),
      Array.from({ length: ranks }, (_, r) => (r === 0 ? [] : [[1, 0, 0, length]])),
    ],
  }),
};

const REDUCTIONS = [{ algorithm: 'ring' }, { algorithm: 'tree' }, { algorithm: 'naive' }, { custom: star }, { algorithm: 'ring', chunkElems: 97 }, { algorithm: 'tree', chunkElems: 61 }];

describe('changing the reduction on every step', () => {
  it('3 runs x 100 steps on 3 towers, a new schedule every step: all steps run, replicas bit-identical after each run', async () => {
    const rt = await createRuntime({ devices: 'cpu*3', layout: { extraTowers: 'threads' } });
    try {
      let changes = 0;
      for (let run = 0; run < 3; run++) {
        const r = rt.train({ model: mnistMlp(16), optimizer: { type: 'momentum', lr: 0.05, momentum: 0.9 }, data: mnist({ batchSize: 48 }), steps: 100, seed: 4 + run });
        r.steps$.subscribe(() => {
          rt.setReduction(REDUCTIONS[changes++ % REDUCTIONS.length] as Parameters<typeof rt.setReduction>[0]);
        });
        const summary = await r.done;
        assert.equal(summary.steps, 100, `run ${run} finished all its steps`);
        const replicas = await rt.checkReplicas();
        assert.equal(replicas.consistent, true, `run ${run}: ${replicas.detail}`);
      }
      assert.ok(changes >= 300, `${changes} reduction changes`);
    } finally {
      await rt.close();
    }
  });
});
