// relu, sigmoid, tanh: as layers of their own, and fused onto a dense/conv2d output (the `activation` field).
import type { Op } from '../../backend/backend.js';
import type { Activation, LayerSpec } from '../spec.js';
import { gradFor, prod, type LayerModule } from './layer.js';

type ActivationSpec = Extract<LayerSpec, { type: 'relu' | 'sigmoid' | 'tanh' }>;

/** act_forward (N) -> in place on y; nothing for 'linear'. */
export function activationForward(act: Activation, y: number, N: number): Op[] {
  return act === 'linear' ? [] : [{ kernel: `${act}_forward`, inputs: [y], outputs: [y], attrs: { N } }];
}

/** act_backward (y, dy: N) -> dy, in place; nothing for 'linear'. */
export function activationBackward(act: Activation, y: number, dy: number, N: number): Op[] {
  return act === 'linear' ? [] : [{ kernel: `${act}_backward`, inputs: [y, dy], outputs: [dy], attrs: { N } }];
}

/** The kernels of an activation ([] for 'linear'). */
export function activationKernels(act: Activation): string[] {
  return act === 'linear' ? [] : [`${act}_forward`, `${act}_backward`];
}

export const activation: LayerModule<ActivationSpec> = {
  plan(spec, input) {
    const n = prod(input);
    const act = spec.type;
    return {
      out: input,
      params: [],
      kernels: activationKernels(act),
      build(ctx) {
        // see Note [In-place activation]; on a linear dense/conv2d output, y is x and dy is dx.
        const y = ctx.inPlace ? ctx.x : ctx.alloc(ctx.maxBatch * n);
        const dy = ctx.inPlace ? ctx.dx : gradFor(ctx, ctx.maxBatch * n);
        const { x, dx } = ctx;
        return {
          y,
          dy,
          inPlaceNext: false,
          // act_forward: x (B, n) -> y (B, n)
          forward: ({ B }) => [{ kernel: `${act}_forward`, inputs: [x], outputs: [y], attrs: { N: B * n } }],
          // act_backward: y (B, n), dy (B, n) -> dx (B, n)
          backward: (B) => (dy !== null && dx !== null ? [{ kernel: `${act}_backward`, inputs: [y, dy], outputs: [dx], attrs: { N: B * n } }] : []),
        };
      },
    };
  },
};
