// CIFAR-10: a bounds-checked reader for the standard binary files, a seeded CIFAR-shaped generated data set, and the
// per-step random crop/flip parameters of the tutorial's preprocessing (applied natively by crop_flip_standardize_u8).

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DataError } from './idx.js';
import type { LabeledSet } from './mnist.js';
import { Rng } from '../util/rng.js';

export const CIFAR_SIZE = 32;
export const CIFAR_CHANNELS = 3;
const PIXELS = CIFAR_SIZE * CIFAR_SIZE * CIFAR_CHANNELS; // 3072
const RECORD = 1 + PIXELS; // 3073: 1 label byte, then the R, G and B planes of 32x32 each
const NUM_CLASSES = 10;

export const CIFAR10_CLASSES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck'] as const;

/** The files of each split, as in cifar-10-binary.tar.gz (folder cifar-10-batches-bin). */
export const CIFAR10_FILES = {
  train: ['data_batch_1.bin', 'data_batch_2.bin', 'data_batch_3.bin', 'data_batch_4.bin', 'data_batch_5.bin'],
  test: ['test_batch.bin'],
} as const;

/**
 * Parses one CIFAR-10 binary batch (records of 1 label byte + 3072 channel-major pixel bytes) into NHWC images.
 * Errors name the source, the problem and what to do.
 */
export function parseCifar10Batch(bytes: Uint8Array, source = '<buffer>'): { images: Uint8Array; labels: Uint8Array; count: number } {
  if (bytes.length === 0) throw new DataError(source, 'the file is empty; expected records of 3073 bytes (1 label + 3072 pixels); re-download it');
  if (bytes.length % RECORD !== 0)
    throw new DataError(
      source,
      `size ${bytes.length} bytes is not a multiple of the 3073-byte record (1 label + 32x32x3 pixels): ${Math.floor(bytes.length / RECORD)} whole records and ${bytes.length % RECORD} bytes left over; ` +
        'the file is truncated or not a CIFAR-10 binary batch (CIFAR-100 files have 2 label bytes): re-download cifar-10-binary.tar.gz',
    );
  const count = bytes.length / RECORD;
  const images = new Uint8Array(count * PIXELS);
  const labels = new Uint8Array(count);
  const plane = CIFAR_SIZE * CIFAR_SIZE;
  for (let n = 0; n < count; n++) {
    const rec = n * RECORD;
    const label = bytes[rec]!;
    if (label >= NUM_CLASSES)
      throw new DataError(source, `label ${label} of record ${n} (byte offset ${rec}) is outside 0..${NUM_CLASSES - 1}; the file is corrupted or not CIFAR-10: re-download it`);
    labels[n] = label;
    // channel-major (C, H, W) → NHWC (H, W, C)
    const src = rec + 1;
    const dst = n * PIXELS;
    for (let p = 0; p < plane; p++) {
      images[dst + 3 * p] = bytes[src + p]!;
      images[dst + 3 * p + 1] = bytes[src + plane + p]!;
      images[dst + 3 * p + 2] = bytes[src + 2 * plane + p]!;
    }
  }
  return { images, labels, count };
}

/** Loads a CIFAR-10 split from `dir` (the extracted cifar-10-batches-bin folder), as NHWC 32x32x3 u8 images. */
export async function loadCifar10(split: 'train' | 'test', dir: string): Promise<LabeledSet> {
  if (split !== 'train' && split !== 'test') throw new Error(`loadCifar10: split must be 'train' or 'test', got ${JSON.stringify(split)}`);
  const parts: Array<{ images: Uint8Array; labels: Uint8Array; count: number }> = [];
  for (const name of CIFAR10_FILES[split]) {
    const path = join(dir, name);
    let bytes: Uint8Array;
    try {
      bytes = await readFile(path);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new DataError(
        path,
        code === 'ENOENT'
          ? `file not found; expected the CIFAR-10 binary version in ${dir} (${CIFAR10_FILES[split].join(', ')}): download cifar-10-binary.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html and extract it, or use generated data (cifar10({ generated: { count } }))`
          : `cannot read the file (${code ?? String(e)})`,
        { cause: e },
      );
    }
    parts.push(parseCifar10Batch(bytes, path));
  }
  const count = parts.reduce((a, p) => a + p.count, 0);
  const images = new Uint8Array(count * PIXELS);
  const labels = new Uint8Array(count);
  let at = 0;
  for (const p of parts) {
    images.set(p.images, at * PIXELS);
    labels.set(p.labels, at);
    at += p.count;
  }
  return { name: `cifar10-${split}`, images, labels, count, rows: CIFAR_SIZE, cols: CIFAR_SIZE, channels: CIFAR_CHANNELS, numClasses: NUM_CLASSES };
}

// Ten clearly different colours (RGB), one per class; the background is another class's colour, darkened.
const PALETTE: ReadonlyArray<readonly [number, number, number]> = [
  [230, 40, 40], [40, 200, 60], [50, 80, 230], [235, 210, 40], [200, 60, 210],
  [40, 210, 210], [245, 140, 30], [140, 90, 40], [240, 240, 240], [120, 120, 120],
];

/**
 * A seeded, learnable CIFAR-shaped data set: `count` NHWC 32x32x3 u8 images in 10 classes. Class c draws a pattern
 * (c mod 5: horizontal stripes, vertical stripes, checkerboard, rings, a centred square; all unchanged in kind by a
 * horizontal flip or a small shift) in colour c over a darker background colour, with a random period, phase,
 * contrast and brightness per image and Gaussian pixel noise. Labels cycle through the classes in a seeded order.
 */
export function generateCifar10(opts: { count: number; seed?: number; noise?: number; name?: string }): LabeledSet {
  const { count } = opts;
  if (!Number.isInteger(count) || count < 1) throw new RangeError(`generateCifar10: count must be a positive integer, got ${String(count)}`);
  const rng = new Rng(opts.seed ?? 0);
  const noise = opts.noise ?? 48;
  const S = CIFAR_SIZE;
  const images = new Uint8Array(count * PIXELS);
  const labels = new Uint8Array(count);
  for (let n = 0; n < count; n++) {
    const c = rng.int(NUM_CLASSES);
    labels[n] = c;
    const fg = PALETTE[c]!, bgBase = PALETTE[(c * 3 + 7) % NUM_CLASSES]!;
    const dark = 0.35 + 0.25 * rng.next();
    const bg = bgBase.map((v) => v * dark);
    const contrast = 0.25 + 0.75 * rng.next();
    const period = 4 + rng.int(5); // 4..8 pixels
    const phaseY = rng.next() * period, phaseX = rng.next() * period;
    const cy = S / 2 + (rng.next() - 0.5) * 6, cx = S / 2 + (rng.next() - 0.5) * 6;
    const half = 6 + rng.int(5);
    const kind = c % 5;
    for (let y = 0; y < S; y++) {
      for (let x = 0; x < S; x++) {
        let p: number;
        switch (kind) {
          case 0: p = Math.floor((y + phaseY) / period) % 2; break;
          case 1: p = Math.floor((x + phaseX) / period) % 2; break;
          case 2: p = (Math.floor((y + phaseY) / period) + Math.floor((x + phaseX) / period)) % 2; break;
          case 3: p = Math.floor(Math.hypot(y - cy, x - cx) / (period * 0.75)) % 2; break;
          default: p = Math.abs(y - cy) <= half && Math.abs(x - cx) <= half ? 1 : 0;
        }
        const mix = p * contrast;
        const o = n * PIXELS + (y * S + x) * 3;
        for (let k = 0; k < 3; k++) {
          const v = bg[k]! + (fg[k]! - bg[k]!) * mix + noise * rng.normal();
          images[o + k] = v < 0 ? 0 : v > 255 ? 255 : Math.round(v);
        }
      }
    }
  }
  return { name: opts.name ?? `cifar10-generated-${count}`, images, labels, count, rows: S, cols: S, channels: CIFAR_CHANNELS, numClasses: NUM_CLASSES };
}

function fmix32(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

const lo32 = (v: number): number => v % 4294967296 >>> 0;
const hi32 = (v: number): number => Math.floor(v / 4294967296) >>> 0;

export interface CropGeometry {
  /** Stored image size. */
  height: number;
  width: number;
  /** Crop size (the model's input). */
  cropHeight: number;
  cropWidth: number;
  /** Random horizontal flips (default true). */
  flip?: boolean;
}

/**
 * The random crop and flip of each example of a batch, as crop_flip_standardize_u8 reads them: 3 ints per example,
 * [dy, dx, flip]. A pure function of (seed, step, dataset index): the same example at the same step gets the same crop
 * however the batch is split over towers, and a resumed run reproduces every crop.
 */
export function cropParams(seed: number, step: number, indices: ArrayLike<number>, g: CropGeometry): Int32Array {
  const ry = g.height - g.cropHeight + 1, rx = g.width - g.cropWidth + 1;
  if (!(ry >= 1 && rx >= 1)) throw new RangeError(`cropParams: a ${g.cropHeight}x${g.cropWidth} crop does not fit ${g.height}x${g.width} images`);
  if (!Number.isSafeInteger(seed) || seed < 0 || !Number.isSafeInteger(step) || step < 0)
    throw new RangeError(`cropParams: seed and step must be non-negative safe integers, got ${seed} and ${step}`);
  let k = fmix32((lo32(seed) ^ 0x3c6ef372) >>> 0);
  k = fmix32((k ^ hi32(seed) ^ 0xa54ff53a) >>> 0);
  k = fmix32((k ^ lo32(step) ^ 0x510e527f) >>> 0);
  k = fmix32((k ^ hi32(step) ^ 0x9b05688c) >>> 0);
  const out = new Int32Array(3 * indices.length);
  const flip = g.flip ?? true;
  for (let b = 0; b < indices.length; b++) {
    const h1 = fmix32((fmix32((indices[b]! + k) >>> 0) ^ 0x1f83d9ab) >>> 0);
    const h2 = fmix32((h1 ^ 0x5be0cd19) >>> 0);
    const h3 = fmix32((h2 ^ 0x6a09e667) >>> 0);
    out[3 * b] = h1 % ry;
    out[3 * b + 1] = h2 % rx;
    out[3 * b + 2] = flip ? h3 & 1 : 0;
  }
  return out;
}

/**
 * Seed 001's inputs: `count` random examples of `dim` values (u8, scaled by 1/255 on upload, so uniform in [0, 1])
 * with dummy labels 0 (the block network's loss is the mean of its output and reads no labels).
 */
export function randomInputs(opts: { count: number; dim: number; seed?: number; name?: string }): LabeledSet {
  const { count, dim } = opts;
  if (!Number.isInteger(count) || count < 1 || !Number.isInteger(dim) || dim < 1)
    throw new RangeError(`randomInputs: count and dim must be positive integers, got ${String(count)} and ${String(dim)}`);
  const rng = new Rng(opts.seed ?? 0);
  const images = new Uint8Array(count * dim);
  for (let i = 0; i < images.length; i++) images[i] = rng.int(256);
  return { name: opts.name ?? `random-${count}x${dim}`, images, labels: new Uint8Array(count), count, rows: 1, cols: dim, numClasses: 1 };
}
