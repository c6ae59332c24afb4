// The named slots of a tower's hyper-parameter buffer: the TypeScript mirror of cpp/hyper.h
// (Note [Hyper-parameter slots]); a test checks both against native().contract().hyper.
export const HyperSlot = {
  /** Learning rate of this step. */
  lr: 0,
  /** The 1-based step t (Adam's bias correction, dropout masks). */
  step: 1,
  /** The shard weight: 1 / global batch (Note [Shard weighting]). */
  gradScale: 2,
} as const;

/** Slots a kernel that reads the buffer requires. */
export const HYPER_USED = 3;
/** Slots allocated per tower. */
export const HYPER_SIZE = 8;

/** A host-side hyper block for one step: `out` filled (a reused block; runWith copies its writes), else a fresh one. */
export function hyperBlock(lr: number, step: number, gradScale: number, out?: Float32Array): Float32Array {
  const h = out ?? new Float32Array(HYPER_SIZE);
  h[HyperSlot.lr] = lr;
  h[HyperSlot.step] = step;
  h[HyperSlot.gradScale] = gradScale;
  return h;
}
