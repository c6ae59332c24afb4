// Writes TensorBoard event files (TFRecord framing around hand-encoded tensorboard.Event protobufs).
import { open, mkdir, type FileHandle } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
// Pure-JS CRC32C (Castagnoli): node:zlib only offers the IEEE polynomial, and TFRecord framing needs Castagnoli.
import { crc32c } from '@aws-crypto/crc32c';

const FILE_VERSION = 'brain.Event:2';
const UTF8 = new TextEncoder();
/** Pending records are handed to the file in the background once this many bytes pile up. */
const AUTO_FLUSH_BYTES = 1 << 20;

/** TFRecord's CRC masking, so that CRCs of data containing CRCs stay well distributed. */
export function maskedCrc32c(data: Uint8Array): number {
  const crc = crc32c(data) >>> 0;
  return ((((crc >>> 15) | (crc << 17)) >>> 0) + 0xa282ead8) >>> 0;
}

/** A minimal protobuf encoder: just the wire types that tensorboard.Event needs. */
class ProtoWriter {
  private buf = new Uint8Array(64);
  private len = 0;

  private reserve(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.len + n) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }

  private byte(b: number): void {
    this.reserve(1);
    this.buf[this.len++] = b;
  }

  /** Varint of a non-negative safe integer; plain arithmetic because BigInt would dominate the cost per event. */
  private varint(v: number): void {
    while (v >= 0x80) {
      this.byte((v % 0x80) | 0x80);
      v = Math.floor(v / 0x80);
    }
    this.byte(v);
  }

  private key(field: number, wireType: number): void {
    this.varint((field << 3) | wireType);
  }

  int64(field: number, v: number): this {
    this.key(field, 0);
    if (v >= 0) {
      this.varint(v);
    } else {
      // Negative int64s are encoded as their 64-bit two's complement: always 10 bytes.
      let x = BigInt.asUintN(64, BigInt(v));
      while (x >= 0x80n) {
        this.byte(Number(x & 0x7fn) | 0x80);
        x >>= 7n;
      }
      this.byte(Number(x));
    }
    return this;
  }

  double(field: number, v: number): this {
    this.key(field, 1);
    this.reserve(8);
    new DataView(this.buf.buffer).setFloat64(this.len, v, true);
    this.len += 8;
    return this;
  }

  float(field: number, v: number): this {
    this.key(field, 5);
    this.reserve(4);
    new DataView(this.buf.buffer).setFloat32(this.len, v, true);
    this.len += 4;
    return this;
  }

  bytes(field: number, data: Uint8Array): this {
    this.key(field, 2);
    this.varint(data.length);
    this.reserve(data.length);
    this.buf.set(data, this.len);
    this.len += data.length;
    return this;
  }

  string(field: number, s: string): this {
    return this.bytes(field, UTF8.encode(s));
  }

  /** Packed repeated double (proto3 default packing for repeated scalars). */
  packedDoubles(field: number, values: readonly number[]): this {
    const body = new Uint8Array(values.length * 8);
    const dv = new DataView(body.buffer);
    values.forEach((v, i) => dv.setFloat64(i * 8, v, true));
    return this.bytes(field, body);
  }

  finish(): Uint8Array {
    return this.buf.slice(0, this.len);
  }
}

/** Writes one TFRecord at `at`: u64 length, masked CRC of the length, payload, masked CRC of the payload. */
function frameInto(out: Uint8Array, at: number, payload: Uint8Array): void {
  const dv = new DataView(out.buffer, out.byteOffset + at, 16 + payload.length);
  dv.setUint32(0, payload.length % 2 ** 32, true);
  dv.setUint32(4, Math.floor(payload.length / 2 ** 32), true);
  dv.setUint32(8, maskedCrc32c(out.subarray(at, at + 8)), true);
  out.set(payload, at + 12);
  dv.setUint32(12 + payload.length, maskedCrc32c(payload), true);
}

/** Event { double wall_time = 1; int64 step = 2; oneof { string file_version = 3; Summary summary = 5; } }. */
function eventProto(wallTime: number, step: number, body: { fileVersion: string } | { summary: Uint8Array }): Uint8Array {
  const w = new ProtoWriter().double(1, wallTime).int64(2, step);
  if ('fileVersion' in body) w.string(3, body.fileVersion);
  else w.bytes(5, body.summary);
  return w.finish();
}

/** HistogramProto with equal-width buckets; bucket i counts values in (limit[i-1], limit[i]]. */
function histogramProto(values: Float32Array, buckets: number): Uint8Array {
  let min = Infinity;
  let max = -Infinity;
  let num = 0;
  let sum = 0;
  let sumSq = 0;
  for (const v of values) {
    if (!Number.isFinite(v)) continue; // NaN/Inf would poison every statistic; TensorBoard cannot plot them anyway
    if (v < min) min = v;
    if (v > max) max = v;
    num++;
    sum += v;
    sumSq += v * v;
  }
  const limits: number[] = [];
  const counts: number[] = [];
  if (num > 0) {
    const n = max > min ? buckets : 1;
    const width = (max - min) / n;
    for (let i = 0; i < n; i++) {
      limits.push(i === n - 1 ? max : min + width * (i + 1));
      counts.push(0);
    }
    for (const v of values) {
      if (!Number.isFinite(v)) continue;
      const i = width > 0 ? Math.min(n - 1, Math.max(0, Math.ceil((v - min) / width) - 1)) : 0;
      counts[i]!++;
    }
  } else {
    min = 0;
    max = 0;
  }
  return new ProtoWriter()
    .double(1, min)
    .double(2, max)
    .double(3, num)
    .double(4, sum)
    .double(5, sumSq)
    .packedDoubles(6, limits)
    .packedDoubles(7, counts)
    .finish();
}

function checkTagStep(tag: string, step: number): void {
  if (typeof tag !== 'string' || tag.length === 0) throw new TypeError(`EventWriter: tag must be a non-empty string, given ${JSON.stringify(tag)}`);
  if (!Number.isSafeInteger(step)) throw new RangeError(`EventWriter: step for '${tag}' must be an integer, given ${step}`);
}

/** Appends scalar/histogram summaries to one event file; records are buffered until flush()/close() (or 1 MiB). */
export class EventWriter {
  /** Framed records not yet written, packed into one growable buffer (many tiny arrays cost far more). */
  private pending = new Uint8Array(4096);
  private pendingBytes = 0;
  private chain: Promise<void> = Promise.resolve();
  private failure: unknown = undefined;
  private closed = false;
  private closing: Promise<void> | undefined;

  private constructor(
    private readonly fh: FileHandle,
    /** Full path of the event file. */
    readonly path: string,
  ) {}

  /** Creates `logDir` if needed and a new event file in it, starting with the file_version event. */
  static async open(logDir: string, opts: { filenameSuffix?: string } = {}): Promise<EventWriter> {
    let suffix = opts.filenameSuffix ?? '';
    if (/[/\\\0]/.test(suffix)) throw new RangeError(`EventWriter: filenameSuffix must not contain path separators, given ${JSON.stringify(suffix)}`);
    if (suffix !== '' && !suffix.startsWith('.')) suffix = `.${suffix}`;
    await mkdir(logDir, { recursive: true });
    const now = Date.now() / 1000;
    const path = join(logDir, `events.out.tfevents.${Math.floor(now)}.${hostname()}${suffix}`);
    let fh: FileHandle;
    try {
      // 'wx': two writers in the same second on the same host must not interleave records in one file.
      fh = await open(path, 'wx');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') {
        throw new Error(`EventWriter: ${path} already exists; pass a distinct filenameSuffix for concurrent writers`, { cause: e });
      }
      throw e;
    }
    const w = new EventWriter(fh, path);
    w.enqueue(eventProto(now, 0, { fileVersion: FILE_VERSION }));
    try {
      await w.flush();
    } catch (e) {
      await fh.close().catch(() => undefined);
      throw e;
    }
    return w;
  }

  /** Records `value` (stored as float32, as TensorBoard's simple_value is) under `tag` at `step`. */
  scalar(tag: string, value: number, step: number, wallTime: number = Date.now() / 1000): void {
    checkTagStep(tag, step);
    if (typeof value !== 'number') throw new TypeError(`EventWriter: value for '${tag}' must be a number, given ${typeof value}`);
    const v = new ProtoWriter().string(1, tag).float(2, value).finish();
    const summary = new ProtoWriter().bytes(1, v).finish();
    this.enqueue(eventProto(wallTime, step, { summary }));
  }

  /** Records a histogram of the finite entries of `values` with `buckets` equal-width buckets. */
  histogram(tag: string, values: Float32Array, step: number, opts: { buckets?: number; wallTime?: number } = {}): void {
    checkTagStep(tag, step);
    const buckets = opts.buckets ?? 30;
    if (!Number.isSafeInteger(buckets) || buckets < 1) throw new RangeError(`EventWriter: buckets for '${tag}' must be a positive integer, given ${buckets}`);
    const v = new ProtoWriter().string(1, tag).bytes(5, histogramProto(values, buckets)).finish();
    const summary = new ProtoWriter().bytes(1, v).finish();
    this.enqueue(eventProto(opts.wallTime ?? Date.now() / 1000, step, { summary }));
  }

  private enqueue(payload: Uint8Array): void {
    if (this.closed) throw new Error(`EventWriter: ${this.path} is closed`);
    const need = this.pendingBytes + 16 + payload.length;
    if (need > this.pending.length) {
      const next = new Uint8Array(Math.max(need, this.pending.length * 2));
      next.set(this.pending.subarray(0, this.pendingBytes));
      this.pending = next;
    }
    frameInto(this.pending, this.pendingBytes, payload);
    this.pendingBytes = need;
    // Long runs should not hold every record in memory; errors from this write surface at flush()/close().
    if (this.pendingBytes >= AUTO_FLUSH_BYTES) void this.flush().catch(() => undefined);
  }

  /** Writes every buffered record to the file (in order; concurrent calls are serialised). */
  flush(): Promise<void> {
    const all = this.pending.subarray(0, this.pendingBytes);
    this.pending = new Uint8Array(4096);
    this.pendingBytes = 0;
    this.chain = this.chain.then(async () => {
      if (this.failure !== undefined || all.length === 0) return;
      try {
        let done = 0;
        while (done < all.length) {
          const { bytesWritten } = await this.fh.write(all, done, all.length - done);
          done += bytesWritten;
        }
      } catch (e) {
        this.failure = e;
      }
    });
    return this.chain.then(() => {
      if (this.failure !== undefined) throw new Error(`EventWriter: writing ${this.path} failed`, { cause: this.failure });
    });
  }

  /** Flushes, syncs and closes the file; later scalar() calls throw. Safe to call more than once. */
  close(): Promise<void> {
    this.closing ??= this.finishAndClose();
    return this.closing;
  }

  private async finishAndClose(): Promise<void> {
    this.closed = true; // first, so nothing can be enqueued after the final flush
    try {
      await this.flush();
      await this.fh.sync();
    } finally {
      await this.fh.close();
    }
  }
}
