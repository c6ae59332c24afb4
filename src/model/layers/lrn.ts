// Local response normalisation across channels (TF's tf.nn.lrn over the last dimension).
import type { LayerSpec } from '../spec.js';
import { gradFor, prod, type LayerModule } from './layer.js';

type LrnSpec = Extract<LayerSpec, { type: 'lrn' }>;

export const lrn: LayerModule<LrnSpec> = {
  plan(spec, input) {
    const n = prod(input);
    const C = input[input.length - 1]!;
    const { depthRadius, bias, alpha, beta } = spec;
    return {
      out: input,
      params: [],
      kernels: ['lrn_forward', 'lrn_backward'],
      build(ctx) {
        const { x, dx } = ctx;
        const y = ctx.alloc(ctx.maxBatch * n);
        const scale = ctx.alloc(ctx.maxBatch * n);
        const dy = gradFor(ctx, ctx.maxBatch * n);
        // N rows of C channels.
        const attrs = (B: number) => ({ N: B * (n / C), C, depthRadius, bias, alpha, beta });
        return {
          y,
          dy,
          inPlaceNext: false,
          // lrn_forward: x (N, C) -> y (N, C), scale (N, C)
          forward: ({ B }) => [{ kernel: 'lrn_forward', inputs: [x], outputs: [y, scale], attrs: attrs(B) }],
          // lrn_backward: x, y, dy, scale (N, C) -> dx (N, C)
          backward: (B) => (dy !== null && dx !== null ? [{ kernel: 'lrn_backward', inputs: [x, y, dy, scale], outputs: [dx], attrs: attrs(B) }] : []),
        };
      },
    };
  },
};
