// Tests for the TensorBoard event writer, read back with an independent TFRecord/protobuf parser and CRC32C.

import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir, hostname } from 'node:os';
import { join } from 'node:path';
import { EventWriter } from '../src/io/tfevents.js';

// --- Independent reader: shares no code with src/io/tfevents.ts (nor its CRC library). ---

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1; // reflected Castagnoli polynomial
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32c(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function masked(bytes: Uint8Array): number {
  const c = crc32c(bytes);
  return (((c >>> 15) | (c << 17)) + 0xa282ead8) >>> 0;
}

interface Field {
  field: number;
  wire: number;
  varint?: bigint;
  fixed64?: DataView;
  fixed32?: DataView;
  bytes?: Uint8Array;
}

function decodeFields(buf: Uint8Array): Field[] {
  const out: Field[] = [];
  let pos = 0;
  const varint = (): bigint => {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      assert.ok(pos < buf.length, 'varint runs off the end');
      const b = buf[pos++]!;
      result |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return result;
      shift += 7n;
      assert.ok(shift < 70n, 'varint too long');
    }
  };
  while (pos < buf.length) {
    const key = Number(varint());
    const f: Field = { field: key >>> 3, wire: key & 7 };
    if (f.wire === 0) f.varint = varint();
    else if (f.wire === 1) {
      assert.ok(pos + 8 <= buf.length);
      f.fixed64 = new DataView(buf.buffer, buf.byteOffset + pos, 8);
      pos += 8;
    } else if (f.wire === 5) {
      assert.ok(pos + 4 <= buf.length);
      f.fixed32 = new DataView(buf.buffer, buf.byteOffset + pos, 4);
      pos += 4;
    } else if (f.wire === 2) {
      const n = Number(varint());
      assert.ok(pos + n <= buf.length, 'length-delimited field runs off the end');
      f.bytes = buf.subarray(pos, pos + n);
      pos += n;
    } else assert.fail(`unexpected wire type ${f.wire}`);
    out.push(f);
  }
  return out;
}

interface ParsedEvent {
  wallTime: number;
  step: number;
  fileVersion?: string;
  scalars: Array<{ tag: string; value: number }>;
  histos: Array<{ tag: string; min: number; max: number; num: number; sum: number; limits: number[]; counts: number[] }>;
}

function packedDoubles(b: Uint8Array): number[] {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return Array.from({ length: b.length / 8 }, (_, i) => dv.getFloat64(i * 8, true));
}

function parseEvent(data: Uint8Array): ParsedEvent {
  const ev: ParsedEvent = { wallTime: 0, step: 0, scalars: [], histos: [] };
  for (const f of decodeFields(data)) {
    if (f.field === 1 && f.wire === 1) ev.wallTime = f.fixed64!.getFloat64(0, true);
    else if (f.field === 2 && f.wire === 0) ev.step = Number(BigInt.asIntN(64, f.varint!));
    else if (f.field === 3 && f.wire === 2) ev.fileVersion = new TextDecoder().decode(f.bytes!);
    else if (f.field === 5 && f.wire === 2) {
      for (const v of decodeFields(f.bytes!)) {
        assert.equal(v.field, 1, 'Summary has only repeated Value value = 1');
        let tag = '';
        let value: number | undefined;
        let histo: Uint8Array | undefined;
        for (const g of decodeFields(v.bytes!)) {
          if (g.field === 1 && g.wire === 2) tag = new TextDecoder().decode(g.bytes!);
          else if (g.field === 2 && g.wire === 5) value = g.fixed32!.getFloat32(0, true);
          else if (g.field === 5 && g.wire === 2) histo = g.bytes!;
          else assert.fail(`unexpected Summary.Value field ${g.field}/${g.wire}`);
        }
        if (value !== undefined) ev.scalars.push({ tag, value });
        if (histo) {
          const h = { tag, min: 0, max: 0, num: 0, sum: 0, limits: [] as number[], counts: [] as number[] };
          for (const x of decodeFields(histo)) {
            if (x.wire === 1) {
              const d = x.fixed64!.getFloat64(0, true);
              if (x.field === 1) h.min = d;
              else if (x.field === 2) h.max = d;
              else if (x.field === 3) h.num = d;
              else if (x.field === 4) h.sum = d;
            } else if (x.field === 6) h.limits = packedDoubles(x.bytes!);
            else if (x.field === 7) h.counts = packedDoubles(x.bytes!);
          }
          ev.histos.push(h);
        }
      }
    } else assert.fail(`unexpected Event field ${f.field}/${f.wire}`);
  }
  return ev;
}

/** Splits TFRecord framing, checking both masked CRCs, and decodes each Event. */
function readEventFile(bytes: Uint8Array): ParsedEvent[] {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: ParsedEvent[] = [];
  let pos = 0;
  while (pos < bytes.length) {
    assert.ok(pos + 12 <= bytes.length, `record header truncated at ${pos}`);
    const len = Number(dv.getBigUint64(pos, true));
    assert.equal(dv.getUint32(pos + 8, true), masked(bytes.subarray(pos, pos + 8)), `length CRC at ${pos}`);
    const start = pos + 12;
    assert.ok(start + len + 4 <= bytes.length, `record data truncated at ${pos}`);
    const data = bytes.subarray(start, start + len);
    assert.equal(dv.getUint32(start + len, true), masked(data), `data CRC at ${pos}`);
    out.push(parseEvent(data));
    pos = start + len + 4;
  }
  return out;
}

// --- Tests ---

describe('EventWriter', () => {
  test('own CRC32C matches the standard check value', () => {
    assert.equal(crc32c(new TextEncoder().encode('123456789')), 0xe3069283);
  });

  test('scalars round trip through framing, CRCs and protobuf', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tfevents-'));
    try {
      const before = Math.floor(Date.now() / 1000);
      const w = await EventWriter.open(join(dir, 'run1'));
      const values = [0.1, 2.5, -1e-8, 123456.789, 0];
      values.forEach((v, i) => w.scalar('train/loss', v, i * 10, 1000 + i));
      w.scalar('eval/accuracy', 0.875, 40);
      w.scalar('big/step', 1, 2 ** 40);
      w.scalar('neg/step', 3, -5);
      await w.flush();
      await w.close();
      await w.close();
      assert.throws(() => w.scalar('x', 1, 1), /closed/);

      const files = await readdir(join(dir, 'run1'));
      assert.equal(files.length, 1);
      const m = /^events\.out\.tfevents\.(\d+)\.(.+)$/.exec(files[0]!);
      assert.ok(m, files[0]);
      assert.ok(Number(m[1]) >= before && Number(m[1]) <= before + 5);
      assert.equal(m[2], hostname());
      assert.equal(w.path, join(dir, 'run1', files[0]!));

      const events = readEventFile(await readFile(w.path));
      assert.equal(events.length, 1 + values.length + 3);
      assert.equal(events[0]!.fileVersion, 'brain.Event:2');
      assert.equal(events[0]!.scalars.length, 0);
      assert.ok(Math.abs(events[0]!.wallTime - Date.now() / 1000) < 60);
      assert.ok(events.slice(1).every((e) => e.fileVersion === undefined));
      values.forEach((v, i) => {
        const e = events[1 + i]!;
        assert.equal(e.step, i * 10);
        assert.equal(e.wallTime, 1000 + i);
        assert.deepEqual(e.scalars, [{ tag: 'train/loss', value: Math.fround(v) }]);
      });
      assert.deepEqual(events[6]!.scalars, [{ tag: 'eval/accuracy', value: 0.875 }]);
      assert.equal(events[6]!.step, 40);
      assert.equal(events[7]!.step, 2 ** 40);
      assert.equal(events[8]!.step, -5);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('filename suffix, histogram, and auto-flush of large runs', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tfevents-'));
    try {
      const w = await EventWriter.open(dir, { filenameSuffix: 'v2' });
      assert.ok(w.path.endsWith(`.${hostname()}.v2`), w.path);
      w.histogram('w', Float32Array.from([0, 1, 2, 3, NaN, 4]), 7, { buckets: 4 });
      const n = 40000; // ~1.5 MB of records: crosses the background-flush threshold
      for (let i = 0; i < n; i++) w.scalar('s', i, i);
      await w.close();
      await assert.rejects(EventWriter.open(dir, { filenameSuffix: 'a/b' }), /path separators/);

      const events = readEventFile(await readFile(w.path));
      assert.equal(events.length, 2 + n);
      const h = events[1]!.histos[0]!;
      assert.equal(h.tag, 'w');
      assert.equal(events[1]!.step, 7);
      assert.deepEqual([h.min, h.max, h.num, h.sum], [0, 4, 5, 10]);
      assert.deepEqual(h.limits, [1, 2, 3, 4]);
      assert.deepEqual(h.counts, [2, 1, 1, 1]);
      for (let i = 0; i < n; i++) assert.equal(events[2 + i]!.scalars[0]!.value, i);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('rejects bad tags and steps', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tfevents-'));
    try {
      const w = await EventWriter.open(dir);
      assert.throws(() => w.scalar('', 1, 0), /non-empty string/);
      assert.throws(() => w.scalar('a', 1, 0.5), /integer/);
      await w.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
