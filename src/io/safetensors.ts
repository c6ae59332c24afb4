// Reads and writes the safetensors format (F32 only): a strict, bounds-checked reader and a canonical writer.

// A checkpoint or weights file that is missing, truncated or malformed is a CheckpointError (src/errors.ts).
import { CheckpointError } from '../errors.js';

export { CheckpointError };

export interface TensorIn {
  name: string;
  shape: number[];
  data: Float32Array;
}

export interface TensorOut {
  shape: number[];
  dtype: 'F32';
  data: Float32Array;
}

export interface SafetensorsContents {
  tensors: Map<string, TensorOut>;
  metadata: Record<string, string>;
}

const METADATA_KEY = '__metadata__';
const F32_BYTES = 4;
/** Cap taken from the reference implementation: a bigger header is a corrupt length field, not a real file. */
const MAX_HEADER_BYTES = 100 * 1024 * 1024;
const ENTRY_KEYS = ['data_offsets', 'dtype', 'shape'];

// Bulk byte copies are only correct on a little-endian host; everything else goes through DataView.
const HOST_LE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return 'an object';
  const s = JSON.stringify(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

/** Serialises `tensors` (in order, contiguous, little-endian) with an optional string→string metadata map. */
export function writeSafetensors(tensors: readonly TensorIn[], metadata?: Record<string, string>): Uint8Array {
  const header: Record<string, unknown> = {};
  if (metadata !== undefined) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') throw new TypeError(`writeSafetensors: metadata '${k}' must be a string, given ${describe(v)}`);
    }
    header[METADATA_KEY] = { ...metadata };
  }
  const seen = new Set<string>();
  let offset = 0;
  for (const t of tensors) {
    if (t.name === METADATA_KEY) throw new RangeError(`writeSafetensors: '${METADATA_KEY}' is reserved and cannot name a tensor`);
    if (seen.has(t.name)) throw new RangeError(`writeSafetensors: duplicate tensor name '${t.name}'`);
    seen.add(t.name);
    for (const d of t.shape) {
      if (!Number.isSafeInteger(d) || d < 0) {
        throw new RangeError(`writeSafetensors: tensor '${t.name}' has shape [${t.shape.join(', ')}]; dimensions must be non-negative integers`);
      }
    }
    if (numel(t.shape) !== t.data.length) {
      throw new RangeError(`writeSafetensors: tensor '${t.name}' has shape [${t.shape.join(', ')}] (${numel(t.shape)} values) but ${t.data.length} values`);
    }
    const bytes = t.data.length * F32_BYTES;
    // Object.defineProperty keeps a tensor called '__proto__' an ordinary key instead of a prototype change.
    Object.defineProperty(header, t.name, {
      value: { dtype: 'F32', shape: [...t.shape], data_offsets: [offset, offset + bytes] },
      enumerable: true,
      writable: true,
      configurable: true,
    });
    offset += bytes;
  }

  let json = new TextEncoder().encode(JSON.stringify(header));
  // Space padding to a multiple of 8 keeps the data section 8-byte aligned for memory-mapping readers.
  const padded = Math.ceil(json.length / 8) * 8;
  if (padded !== json.length) {
    const p = new Uint8Array(padded).fill(0x20);
    p.set(json);
    json = p;
  }

  const out = new Uint8Array(8 + json.length + offset);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  let pos = 8 + json.length;
  for (const t of tensors) {
    if (HOST_LE) {
      out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), pos);
    } else {
      for (let i = 0; i < t.data.length; i++) view.setFloat32(pos + i * F32_BYTES, t.data[i]!, true);
    }
    pos += t.data.byteLength;
  }
  return out;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isIndex(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

interface Entry {
  name: string;
  shape: number[];
  begin: number;
  end: number;
}

/**
 * Parses a safetensors file strictly. Every structural problem (bad length, JSON, fields, dtype, offsets,
 * gaps, overlaps, trailing bytes) is a CheckpointError naming `source`; no read ever leaves `bytes`.
 */
export function readSafetensors(bytes: Uint8Array, source: string): SafetensorsContents {
  function fail(message: string, cause?: unknown): never {
    throw new CheckpointError(source, message, cause === undefined ? undefined : { cause });
  }
  if (bytes.length < 8) fail(`not a safetensors file: expected at least 8 bytes (the header length), found ${bytes.length}`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLen64 = view.getBigUint64(0, true);
  const available = bytes.length - 8;
  if (headerLen64 > BigInt(available)) {
    fail(`header length ${headerLen64} runs past the end of the file: expected at most ${available} bytes after the length field (truncated file?)`);
  }
  const headerLen = Number(headerLen64);
  if (headerLen > MAX_HEADER_BYTES) fail(`header length ${headerLen} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  if (headerLen < 2) fail(`header length ${headerLen} is too small: expected a JSON object of at least 2 bytes`);

  const headerBytes = bytes.subarray(8, 8 + headerLen);
  if (headerBytes[0] !== 0x7b) fail(`header must start with '{', found byte 0x${headerBytes[0]!.toString(16).padStart(2, '0')}`);
  let text = '';
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(headerBytes);
  } catch (e) {
    fail('header is not valid UTF-8', e);
  }
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (e) {
    fail(`header is not valid JSON (${e instanceof Error ? e.message : String(e)})`, e);
  }
  if (!isPlainObject(header)) fail(`header must be a JSON object, found ${describe(header)}`);
  const root = header as Record<string, unknown>;

  const dataStart = 8 + headerLen;
  const dataLen = bytes.length - dataStart;
  const metadata: Array<[string, string]> = [];
  const entries: Entry[] = [];

  for (const [name, raw] of Object.entries(root)) {
    if (name === METADATA_KEY) {
      if (!isPlainObject(raw)) fail(`'${METADATA_KEY}' must be an object of strings, found ${describe(raw)}`);
      for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
        if (typeof v !== 'string') fail(`'${METADATA_KEY}.${k}' must be a string, found ${describe(v)}`);
        metadata.push([k, v as string]);
      }
      continue;
    }
    const where = `tensor '${name}'`;
    if (!isPlainObject(raw)) fail(`${where}: expected an object with dtype, shape and data_offsets, found ${describe(raw)}`);
    const info = raw as Record<string, unknown>;
    const keys = Object.keys(info).sort();
    const missing = ENTRY_KEYS.filter((k) => !keys.includes(k));
    const extra = keys.filter((k) => !ENTRY_KEYS.includes(k));
    if (missing.length > 0) fail(`${where}: missing field(s) ${missing.join(', ')}; expected exactly dtype, shape, data_offsets`);
    if (extra.length > 0) fail(`${where}: unexpected field(s) ${extra.join(', ')}; expected exactly dtype, shape, data_offsets`);

    const dtype = info['dtype'];
    if (typeof dtype !== 'string') fail(`${where}: dtype must be a string, found ${describe(dtype)}`);
    if (dtype !== 'F32') fail(`${where}: unsupported dtype ${describe(dtype)}; only F32 is supported`);

    const shape = info['shape'];
    if (!Array.isArray(shape) || !shape.every(isIndex)) {
      fail(`${where}: shape must be an array of non-negative integers, found ${JSON.stringify(shape).slice(0, 60)}`);
    }
    const dims = shape as number[];

    const offs = info['data_offsets'];
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every(isIndex)) {
      fail(`${where}: data_offsets must be [begin, end] with non-negative integers, found ${JSON.stringify(offs).slice(0, 60)}`);
    }
    const [begin, end] = offs as [number, number];
    if (begin > end) fail(`${where}: data_offsets [${begin}, ${end}] has begin after end`);
    if (end > dataLen) fail(`${where}: data_offsets [${begin}, ${end}] runs past the data section of ${dataLen} bytes (truncated file?)`);

    // The product can overflow for hostile shapes; any count beyond the data section is already wrong.
    const count = numel(dims);
    const expectBytes = count * F32_BYTES;
    if (!Number.isSafeInteger(expectBytes) || expectBytes !== end - begin) {
      fail(`${where}: shape [${dims.join(', ')}] needs ${Number.isSafeInteger(expectBytes) ? expectBytes : 'too many'} bytes of F32 but data_offsets [${begin}, ${end}] span ${end - begin}`);
    }
    entries.push({ name, shape: [...dims], begin, end });
  }

  // Tensors must tile the data section exactly: sorted by offset, each starts where the previous ended.
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  let prev: Entry | undefined;
  for (const e of entries) {
    if (e.begin < cursor) fail(`tensor '${e.name}' data_offsets [${e.begin}, ${e.end}] overlaps tensor '${prev!.name}' [${prev!.begin}, ${prev!.end}]`);
    if (e.begin > cursor) fail(`gap in the data section: expected tensor '${e.name}' to start at byte ${cursor}, found ${e.begin}`);
    cursor = e.end;
    prev = e;
  }
  if (cursor !== dataLen) {
    fail(`data section is ${dataLen} bytes but the tensors cover ${cursor}: ${dataLen - cursor} trailing byte(s)`);
  }

  const tensors = new Map<string, TensorOut>();
  for (const e of entries) {
    const data = new Float32Array((e.end - e.begin) / F32_BYTES);
    const src = bytes.subarray(dataStart + e.begin, dataStart + e.end);
    if (HOST_LE) {
      // Copying through bytes also fixes any misalignment of the source offset.
      new Uint8Array(data.buffer).set(src);
    } else {
      const dv = new DataView(src.buffer, src.byteOffset, src.byteLength);
      for (let i = 0; i < data.length; i++) data[i] = dv.getFloat32(i * F32_BYTES, true);
    }
    tensors.set(e.name, { shape: e.shape, dtype: 'F32', data });
  }
  return { tensors, metadata: Object.fromEntries(metadata) };
}
