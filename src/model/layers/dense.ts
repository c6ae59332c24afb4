// Fully connected: y = x W + b (then the fused activation), on the flattened input.
import type { LayerSpec } from '../spec.js';
import { activationBackward, activationForward, activationKernels } from './activation.js';
import { prod, weight, type LayerModule } from './layer.js';
import type { Param } from '../memory.js';

type DenseSpec = Extract<LayerSpec, { type: 'dense' }>;

export const dense: LayerModule<DenseSpec> = {
  plan(spec, input) {
    const I = prod(input);
    const O = spec.units;
    const kernels = { forward: 'dense_forward', backward: 'dense_backward' };
    const fans = { fanIn: I, fanOut: O };
    return {
      out: [O],
      // W (I, O) and b (O); the L2 weight applies to W only.
      params: [
        { suffix: 'kernel', shape: [I, O], init: spec.kernelInit, l2: spec.l2, ...fans, kernels },
        { suffix: 'bias', shape: [O], init: spec.biasInit, l2: 0, ...fans, kernels },
      ],
      kernels: ['dense_forward', 'dense_backward', ...activationKernels(spec.activation)],
      build(ctx) {
        const [W, b] = ctx.params as [Param, Param];
        const { x, dx } = ctx;
        const y = ctx.alloc(ctx.maxBatch * O);
        const dy = ctx.alloc(ctx.maxBatch * O);
        const act = spec.activation;
        return {
          y,
          dy,
          inPlaceNext: act === 'linear',
          // dense_forward: x (B, I), W (I, O), b (O) -> y (B, O); act_forward in place on y
          forward: ({ B, useEma }) => [
            { kernel: 'dense_forward', inputs: [x, weight(W, useEma), weight(b, useEma)], outputs: [y], attrs: { B, I, O } },
            ...activationForward(act, y, B * O),
          ],
          // act_backward in place on dy; dense_backward: x (B, I), W (I, O), dy (B, O) -> dW (I, O), db (O)[, dx (B, I)]
          backward: (B) => [
            ...activationBackward(act, y, dy, B * O),
            { kernel: 'dense_backward', inputs: [x, W.w, dy], outputs: dx === null ? [W.g, b.g] : [W.g, b.g, dx], attrs: { B, I, O, accumulate: 0 } },
          ],
        };
      },
    };
  },
};
