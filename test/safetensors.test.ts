// Tests for the safetensors writer and strict reader: layout checked by hand, error cases, and fuzzing.

import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { CheckpointError, readSafetensors, writeSafetensors } from '../src/io/safetensors.js';

const SRC = 'weights.safetensors';

/** Builds a safetensors file from a header object and raw data, independently of the writer under test. */
function build(header: unknown, data: Uint8Array = new Uint8Array(0), headerText?: string): Uint8Array {
  const json = new TextEncoder().encode(headerText ?? JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

function f32le(values: number[]): Uint8Array {
  const out = new Uint8Array(values.length * 4);
  const dv = new DataView(out.buffer);
  values.forEach((v, i) => dv.setFloat32(i * 4, v, true));
  return out;
}

function expectError(bytes: Uint8Array, pattern: RegExp): void {
  assert.throws(
    () => readSafetensors(bytes, SRC),
    (e: unknown) => {
      assert.ok(e instanceof CheckpointError, `expected CheckpointError, got ${String(e)}`);
      assert.equal(e.source, SRC);
      assert.ok(e.message.startsWith(`${SRC}: `), e.message);
      assert.match(e.message, pattern);
      return true;
    },
  );
}

const sample = [
  { name: 'dense_0/kernel', shape: [2, 3], data: Float32Array.from([1, -2, 3.5, 0, 1e-30, -Infinity]) },
  { name: 'dense_0/bias', shape: [3], data: Float32Array.from([0.1, 0.2, NaN]) },
  { name: 'scalar', shape: [], data: Float32Array.from([42]) },
  { name: 'empty', shape: [0, 4], data: new Float32Array(0) },
  { name: 'ünïcødé ✓', shape: [1, 1, 1], data: Float32Array.from([7]) },
];

describe('writeSafetensors', () => {
  test('layout matches the format, parsed by hand', () => {
    const bytes = writeSafetensors(sample, { step: '12', note: 'hi' });
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const n = Number(dv.getBigUint64(0, true));
    assert.equal(n % 8, 0, 'header padded to a multiple of 8');
    assert.equal((8 + n) % 8, 0, 'data section 8-byte aligned');
    const headerText = new TextDecoder().decode(bytes.subarray(8, 8 + n));
    assert.match(headerText, /^\{.*\} *$/s, 'header is JSON padded with spaces');
    const header = JSON.parse(headerText) as Record<string, unknown>;
    assert.deepEqual(header['__metadata__'], { step: '12', note: 'hi' });
    const dataStart = 8 + n;
    let expectBegin = 0;
    for (const t of sample) {
      const entry = header[t.name] as { dtype: string; shape: number[]; data_offsets: [number, number] };
      assert.deepEqual(Object.keys(entry).sort(), ['data_offsets', 'dtype', 'shape']);
      assert.equal(entry.dtype, 'F32');
      assert.deepEqual(entry.shape, t.shape);
      assert.deepEqual(entry.data_offsets, [expectBegin, expectBegin + t.data.length * 4], `${t.name} contiguous, in order`);
      for (let i = 0; i < t.data.length; i++) {
        const got = dv.getFloat32(dataStart + expectBegin + i * 4, true);
        assert.ok(Object.is(got, t.data[i]!), `${t.name}[${i}] little-endian: ${got} vs ${t.data[i]}`);
      }
      expectBegin += t.data.length * 4;
    }
    assert.equal(bytes.length, dataStart + expectBegin, 'no trailing bytes');
    assert.equal(Object.keys(header).length, sample.length + 1);
  });

  test('no metadata key unless metadata is given', () => {
    const bytes = writeSafetensors([{ name: 'a', shape: [1], data: Float32Array.from([1]) }]);
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n))) as Record<string, unknown>;
    assert.deepEqual(Object.keys(header), ['a']);
    assert.deepEqual(readSafetensors(bytes, SRC).metadata, {});
  });

  test('rejects inconsistent input', () => {
    assert.throws(() => writeSafetensors([{ name: 'a', shape: [2, 2], data: new Float32Array(3) }]), /shape \[2, 2\] \(4 values\) but 3 values/);
    assert.throws(() => writeSafetensors([{ name: 'a', shape: [-1], data: new Float32Array(0) }]), /non-negative integers/);
    assert.throws(
      () => writeSafetensors([{ name: 'a', shape: [1], data: new Float32Array(1) }, { name: 'a', shape: [1], data: new Float32Array(1) }]),
      /duplicate tensor name 'a'/,
    );
    assert.throws(() => writeSafetensors([{ name: '__metadata__', shape: [0], data: new Float32Array(0) }]), /reserved/);
  });
});

describe('readSafetensors', () => {
  test('round trip keeps names, order, shapes, values and metadata', () => {
    const { tensors, metadata } = readSafetensors(writeSafetensors(sample, { step: '12' }), SRC);
    assert.deepEqual(metadata, { step: '12' });
    assert.deepEqual([...tensors.keys()], sample.map((t) => t.name));
    for (const t of sample) {
      const got = tensors.get(t.name)!;
      assert.equal(got.dtype, 'F32');
      assert.deepEqual(got.shape, t.shape);
      assert.deepEqual(got.data, t.data);
    }
  });

  test('reads from a misaligned view and an unpadded header written elsewhere', () => {
    const data = f32le([1.5, -2.5]);
    const file = build({ x: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }, data);
    const shifted = new Uint8Array(file.length + 3);
    shifted.set(file, 3);
    const got = readSafetensors(shifted.subarray(3), SRC).tensors.get('x')!;
    assert.deepEqual([...got.data], [1.5, -2.5]);
    // The result must not alias the input buffer.
    shifted.fill(0);
    assert.deepEqual([...got.data], [1.5, -2.5]);
  });

  test("names like '__proto__' stay ordinary keys", () => {
    const meta = JSON.parse('{"__proto__": "m"}') as Record<string, string>;
    const bytes = writeSafetensors([{ name: '__proto__', shape: [1], data: Float32Array.from([3]) }], meta);
    const { tensors, metadata } = readSafetensors(bytes, SRC);
    assert.deepEqual([...tensors.get('__proto__')!.data], [3]);
    assert.equal(Object.getOwnPropertyDescriptor(metadata, '__proto__')?.value, 'm');
    assert.equal(Object.getPrototypeOf(metadata), Object.prototype);
  });

  test('an empty file of tensors is valid', () => {
    const { tensors } = readSafetensors(build({}), SRC);
    assert.equal(tensors.size, 0);
  });

  const ok = { dtype: 'F32', shape: [2], data_offsets: [0, 8] };
  const two = f32le([1, 2]);

  test('too short for a header length', () => expectError(new Uint8Array(5), /at least 8 bytes.*found 5/));

  test('header length beyond the file', () => {
    const file = build({ x: ok }, two);
    new DataView(file.buffer).setBigUint64(0, BigInt(file.length), true);
    expectError(file, /header length \d+ runs past the end of the file/);
    new DataView(file.buffer).setBigUint64(0, 0xffff_ffff_ffff_ffffn, true);
    expectError(file, /runs past the end/);
  });

  test('bad JSON / not an object / bad UTF-8', () => {
    expectError(build(null, two, '{"x": {"dtype": "F32",'), /not valid JSON/);
    expectError(build(null, new Uint8Array(0), '[1,2]   '), /must start with '\{'/);
    expectError(build(null, new Uint8Array(0), '{}'.padEnd(4) + '\u0000'), /not valid JSON/);
    const bad = build(null, new Uint8Array(0), '{"a":"xx"}');
    bad[8 + 6] = 0xff;
    expectError(bad, /not valid UTF-8/);
  });

  test('missing and extra fields', () => {
    expectError(build({ x: { dtype: 'F32', shape: [2] } }, two), /tensor 'x': missing field\(s\) data_offsets/);
    expectError(build({ x: { ...ok, extra: 1 } }, two), /tensor 'x': unexpected field\(s\) extra/);
    expectError(build({ x: [1, 2] }, two), /tensor 'x': expected an object.*found an array/);
  });

  test('dtype other than F32 is named', () => {
    expectError(build({ x: { ...ok, dtype: 'F16', shape: [4] } }, two), /tensor 'x': unsupported dtype "F16"; only F32 is supported/);
    expectError(build({ x: { ...ok, dtype: 3 } }, two), /dtype must be a string, found 3/);
  });

  test('bad shapes and offsets', () => {
    expectError(build({ x: { ...ok, shape: [2.5] } }, two), /shape must be an array of non-negative integers/);
    expectError(build({ x: { ...ok, shape: [-2] } }, two), /shape must be/);
    expectError(build({ x: { ...ok, data_offsets: [0] } }, two), /data_offsets must be \[begin, end\]/);
    expectError(build({ x: { ...ok, data_offsets: [8, 0] } }, two), /begin after end/);
    expectError(build({ x: { ...ok, data_offsets: [0, 12] } }, two), /runs past the data section of 8 bytes/);
    expectError(build({ x: { ...ok, shape: [3] } }, two), /shape \[3\] needs 12 bytes of F32 but data_offsets \[0, 8\] span 8/);
    expectError(build({ x: { ...ok, shape: [2 ** 40, 2 ** 40] } }, two), /needs too many bytes/);
  });

  test('overlap, gap and trailing bytes', () => {
    const four = f32le([1, 2, 3, 4]);
    expectError(build({ a: ok, b: { ...ok, data_offsets: [4, 12] } }, four), /tensor 'b'.*overlaps tensor 'a'/);
    expectError(build({ a: ok, b: { ...ok, shape: [0], data_offsets: [4, 4] } }, two), /overlaps/);
    expectError(build({ a: { ...ok, shape: [1], data_offsets: [4, 8] } }, two), /gap.*start at byte 0, found 4/);
    expectError(build({ a: ok }, four), /8 trailing byte\(s\)/);
  });

  test('bad metadata', () => {
    expectError(build({ __metadata__: { a: 1 } }), /'__metadata__.a' must be a string, found 1/);
    expectError(build({ __metadata__: 'x' }), /'__metadata__' must be an object/);
  });

  test('fuzz: mutated or truncated files give consistent data or CheckpointError, nothing else', () => {
    const tensorArb = fc
      .tuple(fc.string({ minLength: 1, maxLength: 6 }), fc.array(fc.integer({ min: 0, max: 3 }), { maxLength: 3 }))
      .map(([name, shape]) => {
        const n = shape.reduce((a, b) => a * b, 1);
        return { name, shape, data: Float32Array.from({ length: n }, (_, i) => i * 0.5 - 1) };
      });
    const filesArb = fc
      .uniqueArray(tensorArb, { selector: (t) => t.name, maxLength: 4 })
      .filter((ts) => ts.every((t) => t.name !== '__metadata__'))
      .map((ts) => writeSafetensors(ts, { k: 'v' }));
    const mutation = fc.oneof(
      fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
      fc.record({ kind: fc.constant('set' as const), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
      fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
      fc.record({ kind: fc.constant('append' as const), extra: fc.uint8Array({ minLength: 1, maxLength: 9 }) }),
      fc.record({ kind: fc.constant('length' as const), value: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }) }),
    );
    fc.assert(
      fc.property(filesArb, fc.array(mutation, { minLength: 1, maxLength: 3 }), (file, muts) => {
        let bytes: Uint8Array = file.slice();
        for (const m of muts) {
          if (m.kind === 'truncate') bytes = bytes.slice(0, m.at % (bytes.length + 1));
          else if (m.kind === 'append') {
            const b = new Uint8Array(bytes.length + m.extra.length);
            b.set(bytes);
            b.set(m.extra, bytes.length);
            bytes = b;
          } else if (bytes.length > 0 && m.kind === 'set') bytes[m.at % bytes.length] = m.byte;
          else if (bytes.length > 0 && m.kind === 'flip') bytes[m.at % bytes.length]! ^= 1 << m.bit;
          else if (m.kind === 'length' && bytes.length >= 8) new DataView(bytes.buffer).setBigUint64(0, m.value, true);
        }
        let result;
        try {
          result = readSafetensors(bytes, SRC);
        } catch (e) {
          assert.ok(e instanceof CheckpointError, `non-CheckpointError: ${String(e)}`);
          assert.equal(e.source, SRC);
          return;
        }
        // Accepted: every tensor must be self-consistent, and re-encoding must be accepted with the same contents.
        let total = 0;
        for (const [, t] of result.tensors) {
          assert.equal(t.dtype, 'F32');
          assert.equal(t.data.length, t.shape.reduce((a, b) => a * b, 1));
          total += t.data.length * 4;
        }
        const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
        assert.equal(8 + n + total, bytes.length, 'tensors cover the data section exactly');
        const again = readSafetensors(writeSafetensors([...result.tensors].map(([name, t]) => ({ name, ...t })), result.metadata), SRC);
        assert.deepEqual(again.tensors, result.tensors);
        assert.deepEqual(again.metadata, result.metadata);
      }),
      { numRuns: 300, seed: 20240611 },
    );
  });
});
