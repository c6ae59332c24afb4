// The fault points of a step program and the fault a test arms at one of them for one run.
import type { DeviceFault, Op } from '../backend/backend.js';

// Note [Fault points]: every step program holds one '@fault' op at each of these points, in production too
// (unarmed it costs one integer compare). A test arms one fault for one run through the 4th argument of
// runWith (stall, nan, bitflip or throw), so faulted steps run the production program. Each op's
// output is the buffer a 'nan' or 'bitflip' writes into:
//   forward  before the forward pass      the batch input x           (a NaN in the data)
//   backward before the backward pass     the data loss scalar        (a NaN loss on this tower)
//   gradient after backward, before the
//            local norms                  the gradient arena          (a NaN in this tower's gradient)
//   reduce   before the collective        the gradient arena          (past the local check: only the reduced norm sees it)
//   received right after the collective   the gradient arena          (this tower received a corrupted chunk)
//   update   before the update            the weight arena            (a weight silently corrupted on one replica)
// A lone tower (no collective) takes the local norm of a parameter with an L2 term in its tail's first pass (Note
// [Fused parameter tail]), so there a 'reduce' or 'received' corruption of such a gradient is seen as the tower's own.
// Two sharded cpu towers that form dense weight gradients from their factors (Note [Shared gradients]) add, at
// 'gradient', 'reduce' and 'received', a '@fault' per formed weight on the tower's dy (factorFaultOp): an index in
// such a weight corrupts the tower's contribution to that element's column, since its own dW is never written.
// With overlap on (Note [Overlapped all-reduce]) 'gradient' and 'reduce' sit before each bucket's local norms and
// before its start, carrying the bucket's range: a 'nan'/'bitflip' at element i happens in i's bucket, at the same
// place relative to that bucket's norms and reduction as above; 'stall'/'throw' happen at the first bucket.
export const FaultPoint = { forward: 0, backward: 1, gradient: 2, reduce: 3, received: 4, update: 5 } as const;
export type FaultPointName = keyof typeof FaultPoint;

const KINDS = ['stall', 'nan', 'bitflip', 'throw'] as const;

/** One fault for one step: where, what, and its ms ('stall') or element index ('nan', 'bitflip'). */
export interface StepFault {
  point: FaultPointName;
  kind: (typeof KINDS)[number];
  ms?: number;
  index?: number;
}

/**
 * The '@fault' op of a point; `output` is the f32 buffer its 'nan'/'bitflip' writes into. With `range`, a 'nan' or
 * 'bitflip' fires only at the op whose [from, to) holds its index (the overlapped all-reduce's per-bucket points).
 */
export function faultOp(point: FaultPointName, output: number, range?: { from: number; to: number }): Op {
  return { kernel: '@fault', inputs: [], outputs: [output], attrs: { point: FaultPoint[point], ...range } };
}

/** The native spec of a fault (numeric point). Checks the point and kind here; the device checks ms and index. */
export function deviceFault(f: StepFault): DeviceFault {
  if (!Object.hasOwn(FaultPoint, f.point))
    throw new TypeError(`fault.point: expected one of ${Object.keys(FaultPoint).join(', ')}; given ${JSON.stringify(f.point)}`);
  if (!KINDS.includes(f.kind)) throw new TypeError(`fault.kind: expected one of ${KINDS.join(', ')}; given ${JSON.stringify(f.kind)}`);
  return { point: FaultPoint[f.point], kind: f.kind, ...(f.ms !== undefined ? { ms: f.ms } : {}), ...(f.index !== undefined ? { index: f.index } : {}) };
}

/**
 * A point's '@fault' on a factor of a gradient (Note [Shared gradients]): a 'nan'/'bitflip' whose index (in the
 * point's plain buffer) lies in [from, to) hits element (index − base) mod wrap of `output`; it must precede the
 * point's plain op (faultOp), which gives the indices their range.
 */
export function factorFaultOp(point: FaultPointName, output: number, at: { from: number; to: number; wrap: number; base: number }): Op {
  return { kernel: '@fault', inputs: [], outputs: [output], attrs: { point: FaultPoint[point], ...at } };
}
