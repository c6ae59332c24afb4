// Max pooling over NHWC images; the argmax of each window is kept for the backward pass (padding cells never win).
import type { LayerSpec } from '../spec.js';
import { geometry } from './geometry.js';
import { gradFor, type LayerModule } from './layer.js';

type MaxpoolSpec = Extract<LayerSpec, { type: 'maxpool' }>;

export const maxpool: LayerModule<MaxpoolSpec> = {
  plan(spec, input, site) {
    const g = geometry(input, spec.pool, spec.strides ?? spec.pool, spec.padding, site);
    return {
      out: [g.OH, g.OW, g.C],
      params: [],
      kernels: ['maxpool_forward', 'maxpool_backward'],
      build(ctx) {
        const { x, dx } = ctx;
        const m = ctx.maxBatch * g.OH * g.OW * g.C;
        const y = ctx.alloc(m);
        const argmax = ctx.alloc(m, 'i32');
        const dy = gradFor(ctx, m);
        return {
          y,
          dy,
          inPlaceNext: false,
          // maxpool_forward: x (B, H, W, C) -> y (B, OH, OW, C), argmax (B, OH, OW, C) i32
          forward: ({ B }) => [{ kernel: 'maxpool_forward', inputs: [x], outputs: [y, argmax], attrs: { B, ...g } }],
          // maxpool_backward: dy (B, OH, OW, C), argmax -> dx (B, H, W, C)
          backward: (B) => (dy !== null && dx !== null ? [{ kernel: 'maxpool_backward', inputs: [dy, argmax], outputs: [dx], attrs: { B, ...g } }] : []),
        };
      },
    };
  },
};
