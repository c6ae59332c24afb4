// 2-D convolution over NHWC images with TF's HWIO kernel [KH, KW, C, K] and a bias per filter (then the fused activation).
import type { LayerSpec } from '../spec.js';
import type { Param } from '../memory.js';
import { activationBackward, activationForward, activationKernels } from './activation.js';
import { geometry } from './geometry.js';
import { weight, type LayerModule } from './layer.js';

type Conv2dSpec = Extract<LayerSpec, { type: 'conv2d' }>;

export const conv2d: LayerModule<Conv2dSpec> = {
  plan(spec, input, site) {
    const g = geometry(input, spec.kernel, spec.strides, spec.padding, site);
    const K = spec.filters;
    const recept = g.KH * g.KW;
    // Keras' fans: KH·KW·C in, KH·KW·K out. The bias is read and written by the conv kernels themselves.
    const fans = { fanIn: recept * g.C, fanOut: recept * K };
    const kernels = { forward: 'conv2d_forward', backward: 'conv2d_backward' };
    return {
      out: [g.OH, g.OW, K],
      params: [
        { suffix: 'kernel', shape: [g.KH, g.KW, g.C, K], init: spec.kernelInit, l2: spec.l2, ...fans, kernels },
        { suffix: 'bias', shape: [K], init: spec.biasInit, l2: 0, ...fans, kernels },
      ],
      kernels: ['conv2d_forward', 'conv2d_backward', ...activationKernels(spec.activation)],
      build(ctx) {
        const [W, b] = ctx.params as [Param, Param];
        const { x, dx } = ctx;
        const m = ctx.maxBatch * g.OH * g.OW * K;
        const y = ctx.alloc(m);
        const dy = ctx.alloc(m);
        const act = spec.activation;
        return {
          y,
          dy,
          inPlaceNext: act === 'linear',
          // conv2d_forward: x (B, H, W, C), W (KH, KW, C, K), b (K) -> y (B, OH, OW, K); act_forward in place on y
          forward: ({ B, useEma }) => [
            { kernel: 'conv2d_forward', inputs: [x, weight(W, useEma), weight(b, useEma)], outputs: [y], attrs: { B, ...g, K } },
            ...activationForward(act, y, B * g.OH * g.OW * K),
          ],
          // act_backward in place on dy; conv2d_backward: x, W, dy (B, OH, OW, K) -> dW, db[, dx (B, H, W, C)]
          backward: (B) => [
            ...activationBackward(act, y, dy, B * g.OH * g.OW * K),
            { kernel: 'conv2d_backward', inputs: [x, W.w, dy], outputs: dx === null ? [W.g, b.g] : [W.g, b.g, dx], attrs: { B, ...g, K, accumulate: 0 } },
          ],
        };
      },
    };
  },
};
