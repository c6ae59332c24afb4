// Splits a global batch over towers so that any size works over any tower count (128 over 3 is 43/43/42).
//
// Note [Shard weighting]: each tower's loss and gradient are scaled by 1 / (global batch), not 1 / (its shard),
// so summing the towers' gradients (the all-reduce) gives exactly the mean-loss gradient of the whole batch,
// whatever the shard sizes: seed 003's 128-over-3 crash cannot happen and unequal shards stay exact.

/** Shard sizes proportional to `weights` (equal by default), each >= 1, summing to `batch` exactly. */
export function shardSizes(batch: number, towers: number, weights?: number[]): number[] {
  if (!Number.isInteger(batch) || batch < 1) throw new RangeError(`batch size must be a positive integer, got ${batch}`);
  if (batch < towers)
    throw new RangeError(
      `a batch of ${batch} cannot be split over ${towers} towers: every tower needs at least one example. ` +
        `Use a batch of at least ${towers}, or fewer towers (for a partial last batch, use lastBatch: 'drop').`,
    );
  const w = weights ?? Array<number>(towers).fill(1);
  const total = w.reduce((a, b) => a + b, 0);
  // Largest-remainder rounding keeps the sum exact and ties go to lower ranks (deterministic).
  const raw = w.map((x) => 1 + ((batch - towers) * x) / total);
  const sizes = raw.map(Math.floor);
  let left = batch - sizes.reduce((a, b) => a + b, 0);
  const order = raw.map((x, i) => [x - Math.floor(x), i] as const).sort((a, b) => b[0] - a[0] || a[1] - b[1]);
  for (let k = 0; left > 0; k++, left--) sizes[order[k % towers]![1]] += 1;
  return sizes;
}

/** Consecutive slices of `indices` with the given sizes (views, no copies). */
export function splitIndices(indices: Int32Array, sizes: number[]): Int32Array[] {
  const out: Int32Array[] = [];
  let off = 0;
  for (const n of sizes) {
    out.push(indices.subarray(off, off + n));
    off += n;
  }
  return out;
}
