// The overlapped part of a step program (Note [Overlapped all-reduce] in cpp/collective/overlap.h): backward with
// each bucket's local norms, fault points and '@bucket' start placed right after its last gradient is written, then
// the '@wait' for every bucket.
import type { Op } from '../backend/backend.js';
import type { Network } from './network.js';
import { faultOp } from './fault.js';
import { localNormOps } from './passes.js';

/** One bucket as a tower sees it: its communicator (over views of every local tower's gradient arena) and range. */
export interface BucketSlot {
  comm: number;
  offset: number;
  length: number;
}

/** The overlapped all-reduce a tower takes part in: its buckets (in start order) and the wait's deadline. */
export interface OverlapSlot {
  buckets: BucketSlot[];
  timeoutMs: number;
}

/**
 * `backward` (the backward pass's ops) with, for each bucket, right after the last op that reads or writes one of
 * its gradients (or the whole arena): the 'gradient' fault point, the bucket's local norms (Note [Non-finite
 * guard]), the 'reduce' fault point, and '@bucket'. The fault ops carry the bucket's range, so a 'nan' or
 * 'bitflip' at element i lands in i's bucket before that bucket's norms or reduction, as without overlap (Note
 * [Fault points]); a 'stall' or 'throw' happens at the first bucket. Then `wait`: '@wait'.
 */
export function overlappedReduceOps(net: Network, backward: Op[], ov: OverlapSlot, rank: number): { backward: Op[]; wait: Op[] } {
  const starts = ov.buckets.map((b) => {
    const params = net.params.filter((p) => p.offset >= b.offset && p.offset < b.offset + b.length);
    const touched = new Set([net.gradArena, ...params.map((p) => p.g)]);
    let last = -1;
    backward.forEach((op, i) => {
      if ([...op.inputs, ...op.outputs].some((h) => touched.has(h))) last = i;
    });
    const range = { from: b.offset, to: b.offset + b.length };
    const ops: Op[] = [
      faultOp('gradient', net.gradArena, range),
      ...localNormOps(net, params),
      faultOp('reduce', net.gradArena, range),
      { kernel: '@bucket', inputs: [], outputs: [], attrs: { comm: b.comm, rank, timeoutMs: ov.timeoutMs } },
    ];
    return { last, ops };
  });
  const out: Op[] = [];
  const place = (i: number) => starts.filter((s) => s.last === i).forEach((s) => out.push(...s.ops));
  place(-1);
  backward.forEach((op, i) => {
    out.push(op);
    place(i);
  });
  return { backward: out, wait: [{ kernel: '@wait', inputs: [], outputs: [], attrs: { timeoutMs: ov.timeoutMs } }] };
}
