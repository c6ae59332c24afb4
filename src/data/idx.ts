// Bounds-checked reader for IDX files (the MNIST container format), optionally gzip-compressed.

import { readFile } from 'node:fs/promises';
import { gunzipSync } from 'node:zlib';

export type IdxDtype = 'u8' | 'i8' | 'i16' | 'i32' | 'f32' | 'f64';

export interface IdxArray {
  dtype: IdxDtype;
  shape: number[];
  data: Uint8Array | Int8Array | Int16Array | Int32Array | Float32Array | Float64Array;
}

// A malformed or unreadable data file is a DataError (src/errors.ts); `source` is the path (or '<buffer>').
import { DataError } from '../errors.js';

export { DataError };

interface DtypeInfo {
  dtype: IdxDtype;
  size: number;
}

const DTYPES: ReadonlyMap<number, DtypeInfo> = new Map([
  [0x08, { dtype: 'u8', size: 1 }],
  [0x09, { dtype: 'i8', size: 1 }],
  [0x0b, { dtype: 'i16', size: 2 }],
  [0x0c, { dtype: 'i32', size: 4 }],
  [0x0d, { dtype: 'f32', size: 4 }],
  [0x0e, { dtype: 'f64', size: 8 }],
]);

const MAX_DIMS = 8;
const REDOWNLOAD = 're-download the file (it is truncated or corrupted)';

function hex(b: number): string {
  return '0x' + b.toString(16).padStart(2, '0');
}

/** Parse an in-memory IDX file. Never reads outside `bytes`; every malformation is a DataError. */
export function parseIdx(bytes: Uint8Array, source = '<buffer>'): IdxArray {
  const n = bytes.length;
  if (n < 4) {
    throw new DataError(
      source,
      `expected at least 4 bytes (IDX magic number), found ${n} byte${n === 1 ? '' : 's'}; ` +
        `the file is empty or truncated: ${REDOWNLOAD}`,
    );
  }
  // Length checked above; the `?? 0` only satisfies noUncheckedIndexedAccess.
  const [m0 = 0, m1 = 0, code = 0, ndims = 0] = bytes.subarray(0, 4);
  if (m0 !== 0 || m1 !== 0) {
    const gz = m0 === 0x1f && m1 === 0x8b;
    throw new DataError(
      source,
      `bad IDX magic: expected first two bytes 0x00 0x00, found ${hex(m0)} ${hex(m1)}; ` +
        (gz
          ? 'the data is gzip-compressed: gunzip it first (readIdx does this for you)'
          : `this is not an IDX file: check the path, or ${REDOWNLOAD}`),
    );
  }
  const info = DTYPES.get(code);
  if (info === undefined) {
    throw new DataError(
      source,
      `unknown IDX dtype code ${hex(code)}: expected one of 0x08 (u8), 0x09 (i8), 0x0b (i16), 0x0c (i32), ` +
        `0x0d (f32), 0x0e (f64); the file is corrupted or not IDX: ${REDOWNLOAD}`,
    );
  }
  if (ndims === 0 || ndims > MAX_DIMS) {
    throw new DataError(
      source,
      `unsupported number of dimensions ${ndims}: expected 1..${MAX_DIMS}; the header is corrupted: ${REDOWNLOAD}`,
    );
  }
  const headerLen = 4 + 4 * ndims;
  if (n < headerLen) {
    throw new DataError(
      source,
      `header truncated: ${ndims} dimensions need a ${headerLen}-byte header, found only ${n} bytes: ${REDOWNLOAD}`,
    );
  }

  const dv = new DataView(bytes.buffer, bytes.byteOffset, n);
  const shape: number[] = [];
  let count = 1;
  let overflow = false;
  for (let d = 0; d < ndims; d++) {
    const dim = dv.getUint32(4 + 4 * d, false);
    shape.push(dim);
    // Keep the product exact: beyond 2^53 it no longer fits a double (and could never fit in memory anyway).
    if (dim !== 0 && count > Number.MAX_SAFE_INTEGER / dim) overflow = true;
    else count *= dim;
  }
  // A zero dimension makes the array empty, whatever the other dims claim.
  if (shape.includes(0)) {
    count = 0;
    overflow = false;
  }
  const available = n - headerLen;
  const shapeText = `[${shape.join(', ')}]`;
  if (overflow || count > available / info.size) {
    const needed = overflow ? 'more than 2^53' : String(count * info.size);
    throw new DataError(
      source,
      `data truncated: shape ${shapeText} of ${info.dtype} needs ${needed} bytes after the ${headerLen}-byte header, ` +
        `found ${available}; ${REDOWNLOAD}`,
    );
  }
  const dataLen = count * info.size;
  if (dataLen < available) {
    throw new DataError(
      source,
      `trailing garbage: shape ${shapeText} of ${info.dtype} needs ${dataLen} data bytes, found ${available} ` +
        `(${available - dataLen} extra); the file is corrupted or the header is wrong: ${REDOWNLOAD}`,
    );
  }

  const off = headerLen;
  switch (info.dtype) {
    case 'u8':
      // Single-byte data needs no swapping: return a view, not a copy.
      return { dtype: 'u8', shape, data: bytes.subarray(off, off + count) };
    case 'i8':
      return { dtype: 'i8', shape, data: new Int8Array(bytes.buffer, bytes.byteOffset + off, count) };
    case 'i16': {
      const out = new Int16Array(count);
      for (let i = 0; i < count; i++) out[i] = dv.getInt16(off + 2 * i, false);
      return { dtype: 'i16', shape, data: out };
    }
    case 'i32': {
      const out = new Int32Array(count);
      for (let i = 0; i < count; i++) out[i] = dv.getInt32(off + 4 * i, false);
      return { dtype: 'i32', shape, data: out };
    }
    case 'f32': {
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = dv.getFloat32(off + 4 * i, false);
      return { dtype: 'f32', shape, data: out };
    }
    case 'f64': {
      const out = new Float64Array(count);
      for (let i = 0; i < count; i++) out[i] = dv.getFloat64(off + 8 * i, false);
      return { dtype: 'f64', shape, data: out };
    }
  }
}

/** Read and parse an IDX file; gzip-compressed files (magic 1f 8b, e.g. `*.gz`) are decompressed transparently. */
export async function readIdx(path: string): Promise<IdxArray> {
  let bytes: Uint8Array;
  try {
    const buf = await readFile(path);
    // Plain Uint8Array view (not a Buffer subclass) so callers see the documented types exactly.
    bytes = new Uint8Array(buf.buffer, buf.byteOffset, buf.length);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'file not found' : `cannot read file (${code ?? String(err)})`;
    throw new DataError(path, `${why}; check the path, or download the data set there`, { cause: err });
  }
  if (bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b) {
    try {
      const out = gunzipSync(bytes);
      bytes = new Uint8Array(out.buffer, out.byteOffset, out.length);
    } catch (err) {
      throw new DataError(
        path,
        `expected valid gzip data (file starts with gzip magic 1f 8b), but decompression failed ` +
          `(${(err as Error).message}); ${REDOWNLOAD}`,
        { cause: err },
      );
    }
  }
  return parseIdx(bytes, path);
}
