// The passes of a network as op lists: forward, loss, backward (the layers' own ops, in order and reverse) and the
// update after the gradients are reduced.
import type { Op } from '../backend/backend.js';
import type { Network } from './network.js';
import { fusedUpdateOp, type ResolvedTrainingOptions } from './optimizer.js';
import type { Param } from './memory.js';

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

/**
 * Σ g² of each parameter's local gradient (Note [Non-finite guard]), before any collective. A lone tower (`lone`: no
 * collective) takes none here, only the fills: see Note [Lone tower's local norms].
 */
export function localNormOps(net: Network, params = net.params, lone = false): Op[] {
  return params.flatMap((p): Op[] => [
    { kernel: 'fill', inputs: [], outputs: [p.localNormSq], attrs: { N: 1, value: 0 } },
    ...(lone ? [] : [{ kernel: 'sum_squares', inputs: [p.g], outputs: [p.localNormSq], attrs: { N: p.numel } }]),
  ]);
}

/** A lone tower's local norms of the parameters without an L2 term, after a trip (Note [Lone tower's local norms]). */
export function loneLocalNormOps(net: Network): Op[] {
  return localNormOps(net, net.params.filter((p) => p.l2 === 0));
}

// Note [Fused parameter tail]: after the gradients are reduced each parameter is touched in two passes, split by the
// non-finite guard (Note [Non-finite guard]), which must see the whole reduced norm before any weight changes:
//  1. before the guard, `l2_grad_norm` (L2 on) or `sum_squares` (L2 off) per parameter: g += λ·w, the L2 loss of
//     the weights that produced this step's data loss (the reported regLoss keeps that meaning), and Σ g² added to
//     the global squared norm: l2_backward, l2_loss and the arena's sum_squares in one pass;
//  2. after the guard, `fused_<optimizer>_update` per parameter: the clip factor from the global norm (g written
//     back scaled, as clip_by_norm leaves it, so readGradients still shows the clipped gradient), the update, and
//     the EMA of the new weights: clip_by_norm, <optimizer>_update and ema_update in one pass.
// Each fused kernel gives the bits of its unfused sequence on a parameter (test/kernels.test.ts compares them). The
// one difference from the unfused op list: the global norm is summed per parameter into the f32 normSq (one
// rounding per parameter) instead of in one pass over the arena; every tower runs the same op list, so replicas stay
// bit-identical (Note [Synchronous update]). The clipping factor and the guard read that same normSq.
// Note [Lone tower's local norms]: a lone tower (no collective: its reduced gradient is its local one) reads each
// gradient once before the update instead of twice (issue 16). A parameter with an L2 term takes its local norm in
// pass 1 (l2_grad_norm's `local` output, the bits of the sum_squares it replaces, read before g += λ·w). A
// parameter without one is only summed into the global norm in pass 1 (sum_squares leaves g as it is), and its
// local norm is computed after a guard trip, from that intact gradient (Tower.refreshLocalNorms, loneLocalNormOps),
// as the sharded towers' fused reduce does (Note [Shared gradients]): the same value the step would have taken, and
// no pass at all on the steps that do not trip (the block network: 6 of its 12 MB-scale passes per step, about
// 0.5 ms of 19 at 2 threads). Its local norms are thus taken after the 'reduce' and 'received' fault points
// (Note [Fault points]), which on a lone tower have no collective to blame.

/**
 * The L2 term and the norm of one reduced gradient (pass 1 of Note [Fused parameter tail]); with `local` (a lone
 * tower's localNormSq, filled with 0 by localNormOps), also the local norm of a parameter with an L2 term.
 */
export function paramNormOp(p: Pick<Param, 'l2' | 'w' | 'g' | 'numel'>, buffers: { regLoss: number; normSq: number }, local?: number): Op {
  const { regLoss, normSq } = buffers;
  return p.l2 > 0
    ? { kernel: 'l2_grad_norm', inputs: [p.w], outputs: [p.g, normSq, regLoss, ...(local === undefined ? [] : [local])], attrs: { N: p.numel, lambda: p.l2 } }
    : { kernel: 'sum_squares', inputs: [p.g], outputs: [normSq], attrs: { N: p.numel } };
}

/** Pass 1 for every parameter, with the local norms on a lone tower (see paramNormOp). */
export function paramNormOps(net: Network, lone: boolean): Op[] {
  return net.params.map((p) => paramNormOp(p, net.buffers, lone ? p.localNormSq : undefined));
}

/** Clipping, the optimizer and the EMA of one parameter (pass 2 of Note [Fused parameter tail]). */
export function paramUpdateOp(p: Param, t: ResolvedTrainingOptions, buffers: { normSq: number; hyper: number }): Op {
  return fusedUpdateOp(t, p, buffers.normSq, buffers.hyper);
}

/**
 * After the gradients are reduced (or at once, on a single tower): the L2 penalty and the global norm, its '@guard',
 * then clipping, the optimizer and the EMA, fused per parameter (Note [Fused parameter tail]). Every tower runs these
 * on identical inputs, so replicas stay bit-identical (Note [Synchronous update]).
 */
export function updateOps(net: Network, t: ResolvedTrainingOptions, lone = false): Op[] {
  const { regLoss, normSq } = net.buffers;
  return [
    { kernel: 'fill', inputs: [], outputs: [regLoss], attrs: { N: 1, value: 0 } },
    { kernel: 'fill', inputs: [], outputs: [normSq], attrs: { N: 1, value: 0 } },
    ...paramNormOps(net, lone),
    { kernel: '@guard', inputs: [normSq], outputs: [] },
    ...net.params.map((p) => paramUpdateOp(p, t, net.buffers)),
  ];
}

/** The kernels that update each parameter after the all-reduce (its L2 and norm, then clipping, optimizer, EMA). */
export function updateKernels(net: Network, t: ResolvedTrainingOptions | undefined): string[][] {
  if (!t) return net.params.map(() => []);
  return net.params.map((p) => [paramNormOp(p, net.buffers).kernel, paramUpdateOp(p, t, net.buffers).kernel]);
}
