// Gradient buckets for the overlapped all-reduce (Note [Overlapped all-reduce] in cpp/collective/overlap.h): a pure
// function of the parameter list, the same on every tower of every process.

/** Default bucket cap: 1 MiB (PyTorch DDP uses 25 MiB; towerline's models are small, so a smaller cap overlaps more). */
export const DEFAULT_BUCKET_BYTES = 1 << 20;

/** A bucket: the element range [offset, offset+length) of the gradient arena it reduces, and its parameters. */
export interface Bucket {
  offset: number;
  length: number;
  /** Names of its parameters, in the order backward finishes them (reverse parameter order). */
  params: string[];
}

// Note [Bucket plan]: as DDP's reducer, parameters are taken in reverse order (backward writes the last layer's
// gradients first) and packed into buckets of at most `bucketBytes` f32 bytes; a parameter that would overflow a
// non-empty bucket starts the next one, and a parameter larger than the cap is a bucket of its own. The buckets'
// ranges partition [0, paramCount) exactly (any padding between parameters goes to the bucket after it), so the
// buckets together reduce every element of the arena once, as the whole-arena all-reduce does. The result depends
// only on the parameter list and the cap: every tower of every process computes the same buckets.
export function planBuckets(params: ReadonlyArray<{ name: string; offset: number; numel: number }>, paramCount: number, bucketBytes: number): Bucket[] {
  if (!Number.isInteger(bucketBytes) || bucketBytes < 4)
    throw new RangeError(`bucketBytes: expected an integer of at least 4 (bytes of one f32 gradient); given ${bucketBytes}`);
  const order = [...params].sort((a, b) => b.offset - a.offset);
  const groups: Array<typeof order> = [];
  let cur: typeof order = [];
  let bytes = 0;
  for (const p of order) {
    if (cur.length > 0 && bytes + 4 * p.numel > bucketBytes) {
      groups.push(cur);
      cur = [];
      bytes = 0;
    }
    cur.push(p);
    bytes += 4 * p.numel;
  }
  if (cur.length > 0) groups.push(cur);
  // groups[k] holds decreasing offsets; its range runs from its lowest offset to the start of groups[k-1].
  let end = paramCount;
  return groups.map((g, k) => {
    const start = k === groups.length - 1 ? 0 : g[g.length - 1]!.offset;
    const b = { offset: start, length: end - start, params: g.map((p) => p.name) };
    end = start;
    return b;
  });
}
