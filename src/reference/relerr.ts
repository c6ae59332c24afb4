// Error measure of the precision contract (docs/kernels.md) and a seeded PRNG so tests are reproducible.

/** ‖a − ref‖₂ / ‖ref‖₂; when ‖ref‖₂ is 0 there is no scale, so the absolute ‖a‖₂ is returned. */
export function relErr(a: ArrayLike<number>, ref: ArrayLike<number>): number {
  if (a.length !== ref.length) {
    throw new Error(`relErr: lengths differ (a has ${a.length}, ref has ${ref.length})`);
  }
  let diff = 0;
  let norm = 0;
  let normA = 0;
  for (let i = 0; i < ref.length; i++) {
    const d = a[i] - ref[i];
    diff += d * d;
    norm += ref[i] * ref[i];
    normA += a[i] * a[i];
  }
  return norm === 0 ? Math.sqrt(normA) : Math.sqrt(diff) / Math.sqrt(norm);
}

/** mulberry32: uniform numbers in [0, 1), same sequence for the same seed. */
export function testRandom(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
