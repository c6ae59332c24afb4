// The passes of a network as op lists: forward, loss, backward (the layers' own ops, in order and reverse) and the
// update after the gradients are reduced.
import type { Op } from '../backend/backend.js';
import type { Network } from './network.js';
import { updateOp, type ResolvedTrainingOptions } from './optimizer.js';

/** Forward ops at batch B; `train` turns dropout on (evaluation runs it as the identity). */
export function forwardOps(net: Network, B: number, opts: { train: boolean; useEma: boolean }): Op[] {
  return net.layers.flatMap((l) => l.forward({ B, ...opts }));
}

/** softmax_xent_forward: logits (B, C), labels (B), hyper -> loss (1), probs (B, C); or mean_forward -> loss (1). */
export function lossOps(net: Network, B: number): Op[] {
  const { logits, labels, hyper, loss, probs } = net.buffers;
  const C = net.outputDim;
  if (net.spec.loss === 'mean') return [{ kernel: 'mean_forward', inputs: [logits, hyper], outputs: [loss], attrs: { B, C } }];
  return [{ kernel: 'softmax_xent_forward', inputs: [logits, labels, hyper], outputs: [loss, probs], attrs: { B, C } }];
}

/** The loss's backward into dLogits (B, C), then every layer's backward in reverse order. */
export function backwardOps(net: Network, B: number): Op[] {
  const { labels, hyper, probs, dLogits } = net.buffers;
  const C = net.outputDim;
  const head: Op =
    net.spec.loss === 'mean'
      ? { kernel: 'mean_backward', inputs: [hyper], outputs: [dLogits], attrs: { B, C } }
      : { kernel: 'softmax_xent_backward', inputs: [probs, labels, hyper], outputs: [dLogits], attrs: { B, C } };
  return [head, ...[...net.layers].reverse().flatMap((l) => l.backward(B))];
}

/** Σ g² of each parameter's local gradient (Note [Non-finite guard]), before any collective. */
export function localNormOps(net: Network, params = net.params): Op[] {
  return params.flatMap((p): Op[] => [
    { kernel: 'fill', inputs: [], outputs: [p.localNormSq], attrs: { N: 1, value: 0 } },
    { kernel: 'sum_squares', inputs: [p.g], outputs: [p.localNormSq], attrs: { N: p.numel } },
  ]);
}

/**
 * After the gradients are reduced (or at once, on a single tower): L2 penalty, the global norm and its '@guard',
 * clipping, the optimizer and the EMA. Every tower runs these on identical inputs, so replicas stay bit-identical
 * (Note [Synchronous update]).
 */
export function updateOps(net: Network, t: ResolvedTrainingOptions): Op[] {
  const { regLoss, normSq, hyper } = net.buffers;
  const { gradArena, paramCount } = net;
  const ops: Op[] = [{ kernel: 'fill', inputs: [], outputs: [regLoss], attrs: { N: 1, value: 0 } }];
  for (const p of net.params) {
    if (p.l2 > 0) {
      ops.push({ kernel: 'l2_loss', inputs: [p.w], outputs: [regLoss], attrs: { N: p.numel, lambda: p.l2 } });
      ops.push({ kernel: 'l2_backward', inputs: [p.w], outputs: [p.g], attrs: { N: p.numel, lambda: p.l2 } });
    }
  }
  // The global gradient norm (reported every step, and the clipping threshold's input): one pass over the arena.
  ops.push({ kernel: 'fill', inputs: [], outputs: [normSq], attrs: { N: 1, value: 0 } });
  ops.push({ kernel: 'sum_squares', inputs: [gradArena], outputs: [normSq], attrs: { N: paramCount } });
  ops.push({ kernel: '@guard', inputs: [normSq], outputs: [] });
  if (t.clipNorm !== undefined) ops.push({ kernel: 'clip_by_norm', inputs: [normSq], outputs: [gradArena], attrs: { N: paramCount, clipNorm: t.clipNorm } });
  for (const p of net.params) ops.push(updateOp(t.optimizer, p.numel, p.w, p.g, p.slots, hyper));
  if (t.emaDecay !== undefined) for (const p of net.params) ops.push({ kernel: 'ema_update', inputs: [p.w], outputs: [p.ema!], attrs: { N: p.numel, decay: t.emaDecay } });
  return ops;
}

/** The kernels that update each parameter after the all-reduce (its optimizer, L2, clipping, EMA). */
export function updateKernels(net: Network, t: ResolvedTrainingOptions | undefined): string[][] {
  if (!t) return net.params.map(() => []);
  const { hyper } = net.buffers;
  return net.params.map((p) => [
    ...(p.l2 > 0 ? ['l2_loss', 'l2_backward'] : []),
    ...(t.clipNorm !== undefined ? ['clip_by_norm'] : []),
    updateOp(t.optimizer, p.numel, p.w, p.g, p.slots, hyper).kernel,
    ...(t.emaDecay !== undefined ? ['ema_update'] : []),
  ]);
}
