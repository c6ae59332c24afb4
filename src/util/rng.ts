// Seeded, platform-independent PRNG (xoshiro128** seeded by a splitmix32-style hash) with serialisable state.

// Only 32-bit integer ops (Math.imul, shifts, xor) feed the integer stream, so results are bit-identical on every
// platform. Floating-point derived values use +, *, / and Math.sqrt / Math.log; V8 implements log with its own
// fdlibm port, so the same Node major version gives the same bits everywhere.

const GOLDEN = 0x9e3779b9;
const TWO_POW_32 = 4294967296;
const TWO_POW_53 = 9007199254740992;
const STATE_VERSION = 1;
const ALGORITHM = 'xoshiro128**';

/** Murmur3 / splitmix32 finaliser: a bijective avalanche on 32-bit words. */
function fmix32(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

/**
 * Hash a list of 32-bit words into 4 state words. Each output word is an independent hash of *all* inputs, so the
 * derived state carries up to 128 bits of entropy rather than being squeezed through one 32-bit value.
 */
function deriveState(words: readonly number[]): [number, number, number, number] {
  const out: [number, number, number, number] = [0, 0, 0, 0];
  for (let lane = 0; lane < 4; lane++) {
    let h = Math.imul(GOLDEN, lane + 1) >>> 0;
    for (const w of words) h = (fmix32((h ^ w) >>> 0) + GOLDEN) >>> 0;
    out[lane] = fmix32(h);
  }
  // xoshiro's all-zero state is a fixed point; astronomically unlikely, but make it impossible.
  if ((out[0] | out[1] | out[2] | out[3]) === 0) out[0] = GOLDEN;
  return out;
}

/** Split a safe integer (possibly negative) into its low / high 32-bit two's-complement words. */
function splitWords(n: number): [number, number] {
  const big = BigInt(n);
  return [Number(BigInt.asUintN(32, big)), Number(BigInt.asUintN(32, big >> 32n))];
}

function f64ToHex(x: number): string {
  const dv = new DataView(new ArrayBuffer(8));
  dv.setFloat64(0, x);
  return dv.getBigUint64(0).toString(16).padStart(16, '0');
}

function hexToF64(s: string): number {
  const dv = new DataView(new ArrayBuffer(8));
  dv.setBigUint64(0, BigInt('0x' + s));
  return dv.getFloat64(0);
}

function isU32(x: unknown): x is number {
  return typeof x === 'number' && Number.isInteger(x) && x >= 0 && x < TWO_POW_32;
}

function isU32Quad(x: unknown): x is [number, number, number, number] {
  return Array.isArray(x) && x.length === 4 && x.every(isU32);
}

export class Rng {
  // Generator state (4 x u32).
  private s0 = 0;
  private s1 = 0;
  private s2 = 0;
  private s3 = 0;
  /** Origin key: fixed at construction, so fork(k) is independent of how many numbers were drawn. */
  private key: [number, number, number, number] = [0, 0, 0, 0];
  /** Second Box-Muller (polar) variate, kept so normal() pairs survive getState/fromState. */
  private spare: number | null = null;

  constructor(seed: number) {
    if (!Number.isSafeInteger(seed)) {
      throw new RangeError(`Rng seed must be a safe integer, got ${String(seed)}`);
    }
    const [lo, hi] = splitWords(seed);
    // Leading tag word separates the seed domain from the fork domain.
    this.setKey(deriveState([0x5eed5eed, lo, hi]));
  }

  private setKey(key: [number, number, number, number]): void {
    this.key = key;
    [this.s0, this.s1, this.s2, this.s3] = key;
    this.spare = null;
  }

  /** Next uniformly distributed 32-bit unsigned integer. */
  nextU32(): number {
    const s1 = this.s1;
    const result = Math.imul(rotl(Math.imul(s1, 5) >>> 0, 7), 9) >>> 0;
    const t = (s1 << 9) >>> 0;
    this.s2 = (this.s2 ^ this.s0) >>> 0;
    this.s3 = (this.s3 ^ this.s1) >>> 0;
    this.s1 = (this.s1 ^ this.s2) >>> 0;
    this.s0 = (this.s0 ^ this.s3) >>> 0;
    this.s2 = (this.s2 ^ t) >>> 0;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** Uniform in [0, 2^53). */
  private next53(): number {
    const a = this.nextU32() >>> 5; // 27 bits
    const b = this.nextU32() >>> 6; // 26 bits
    return a * 67108864 + b;
  }

  /** Uniform double in [0, 1) with 53 random bits. */
  next(): number {
    return this.next53() / TWO_POW_53;
  }

  /** Uniform integer in [0, n), unbiased (rejection sampling). n must be an integer in [1, 2^53]. */
  int(n: number): number {
    if (!Number.isInteger(n) || n < 1 || n > TWO_POW_53) {
      throw new RangeError(`Rng.int(n) needs an integer n in [1, 2^53], got ${String(n)}`);
    }
    if (n <= TWO_POW_32) {
      // Largest multiple of n that fits in 2^32: values at or above it would bias the modulo.
      const limit = TWO_POW_32 - (TWO_POW_32 % n);
      for (;;) {
        const x = this.nextU32();
        if (x < limit) return x % n;
      }
    }
    const limit = TWO_POW_53 - (TWO_POW_53 % n);
    for (;;) {
      const x = this.next53();
      if (x < limit) return x % n;
    }
  }

  /** Standard normal variate (Marsaglia polar method: needs only sqrt and log, no sin/cos). */
  normal(): number {
    if (this.spare !== null) {
      const z = this.spare;
      this.spare = null;
      return z;
    }
    for (;;) {
      const u = 2 * this.next() - 1;
      const v = 2 * this.next() - 1;
      const s = u * u + v * v;
      if (s > 0 && s < 1) {
        const m = Math.sqrt((-2 * Math.log(s)) / s);
        this.spare = v * m;
        return u * m;
      }
    }
  }

  /** TF semantics: normal(mean, stddev) with draws more than 2 stddev from the mean discarded and re-drawn. */
  truncatedNormal(stddev: number, mean = 0): number {
    if (!Number.isFinite(stddev) || stddev < 0) {
      throw new RangeError(`truncatedNormal stddev must be finite and >= 0, got ${String(stddev)}`);
    }
    if (!Number.isFinite(mean)) throw new RangeError(`truncatedNormal mean must be finite, got ${String(mean)}`);
    for (;;) {
      const z = this.normal();
      if (Math.abs(z) <= 2) return mean + stddev * z;
    }
  }

  /** In-place Fisher-Yates shuffle. */
  shuffle<T>(a: T[] | Int32Array | Uint32Array): void {
    for (let i = a.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      // Both indices are in range; the casts only bridge the array/typed-array union.
      const tmp = a[i] as T & number;
      a[i] = a[j] as T & number;
      a[j] = tmp;
    }
  }

  /**
   * Independent derived stream. Depends only on this generator's origin (seed and fork path) and `stream`, not on
   * how many values were drawn, so e.g. per-layer init streams don't shift when other draws are added.
   */
  fork(stream: number): Rng {
    if (!Number.isSafeInteger(stream) || stream < 0) {
      throw new RangeError(`Rng.fork stream must be a non-negative safe integer, got ${String(stream)}`);
    }
    const [lo, hi] = splitWords(stream);
    const child = Object.create(Rng.prototype) as Rng;
    child.setKey(deriveState([0xf02cf02c, ...this.key, lo, hi]));
    return child;
  }

  /** JSON string capturing everything needed to continue the sequence bit for bit. */
  getState(): string {
    return JSON.stringify({
      v: STATE_VERSION,
      alg: ALGORITHM,
      s: [this.s0, this.s1, this.s2, this.s3],
      key: this.key,
      spare: this.spare === null ? null : f64ToHex(this.spare),
    });
  }

  static fromState(state: string): Rng {
    const fail = (why: string): never => {
      throw new Error(`Rng.fromState: invalid state (${why}); pass a string produced by Rng.getState()`);
    };
    let parsed: unknown;
    try {
      parsed = JSON.parse(state);
    } catch {
      return fail('not JSON');
    }
    if (typeof parsed !== 'object' || parsed === null) return fail('not an object');
    const o = parsed as Record<string, unknown>;
    if (o.v !== STATE_VERSION) return fail(`version ${String(o.v)}, expected ${STATE_VERSION}`);
    if (o.alg !== ALGORITHM) return fail(`algorithm ${String(o.alg)}, expected ${ALGORITHM}`);
    if (!isU32Quad(o.s)) return fail('s must be 4 uint32 words');
    if (!isU32Quad(o.key)) return fail('key must be 4 uint32 words');
    if ((o.s[0] | o.s[1] | o.s[2] | o.s[3]) === 0) return fail('all-zero generator state');
    let spare: number | null = null;
    if (o.spare !== null) {
      if (typeof o.spare !== 'string' || !/^[0-9a-f]{16}$/.test(o.spare)) return fail('spare must be null or 16 hex digits');
      spare = hexToF64(o.spare);
      if (!Number.isFinite(spare)) return fail('spare is not finite');
    }
    const r = Object.create(Rng.prototype) as Rng;
    r.key = [o.key[0], o.key[1], o.key[2], o.key[3]];
    [r.s0, r.s1, r.s2, r.s3] = o.s;
    r.spare = spare;
    return r;
  }
}
