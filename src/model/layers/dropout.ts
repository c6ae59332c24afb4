// Inverted dropout at training (keep with probability 1 − rate, scale kept values by 1/(1 − rate)); the identity at evaluation.
import type { Op } from '../../backend/backend.js';
import type { LayerSpec } from '../spec.js';
import { gradFor, prod, type LayerModule } from './layer.js';

type DropoutSpec = Extract<LayerSpec, { type: 'dropout' }>;

export const dropout: LayerModule<DropoutSpec> = {
  plan(spec, input, site) {
    const n = prod(input);
    const keepProb = 1 - spec.rate;
    // The mask is a function of (seed, step t from the hyper block, element): a fresh mask per step, the same on every run.
    const seed = spec.seed ?? 7919 * (site.index + 1);
    return {
      out: input,
      params: [],
      kernels: ['dropout_forward', 'dropout_backward', 'copy'],
      build(ctx) {
        const { x, dx, hyper } = ctx;
        const y = ctx.alloc(ctx.maxBatch * n);
        const mask = ctx.alloc(ctx.maxBatch * n);
        const dy = gradFor(ctx, ctx.maxBatch * n);
        return {
          y,
          dy,
          inPlaceNext: false,
          // train: dropout_forward: x (B, n), hyper -> y (B, n), mask (B, n); evaluation: copy x -> y
          forward: ({ B, train }): Op[] => [
            train
              ? { kernel: 'dropout_forward', inputs: [x, hyper], outputs: [y, mask], attrs: { N: B * n, keepProb, seed } }
              : { kernel: 'copy', inputs: [x], outputs: [y], attrs: { N: B * n } },
          ],
          // dropout_backward: dy (B, n), mask -> dx (B, n)
          backward: (B) => (dy !== null && dx !== null ? [{ kernel: 'dropout_backward', inputs: [dy, mask], outputs: [dx], attrs: { N: B * n } }] : []),
        };
      },
    };
  },
};
