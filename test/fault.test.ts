// Fault injection at '@fault' ops (Note [Fault injection] in cpp/fault.h), native level: each kind does what the
// contract says, only when armed, only for that run, once; bad specs are rejected naming the field; a 'throw'
// takes the kernel-error path (peers in a collective are aborted, naming the tower).
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { native, type NativeFault } from '../src/native/addon.js';
import { naiveSchedule } from '../src/scheduler/naive.js';

const nat = native();
const N = 8;
const devs = [nat.openDevice('cpu', 60), nat.openDevice('cpu', 61)];
after(() => devs.forEach((d) => nat.closeDevice(d.id)));
const dev = devs[0]!;

// x = 1.5 everywhere; fault point 2 on x; y = x; fault point 5 on y; a second point-5 op on z.
const x = nat.alloc(dev.id, N, 'f32'), y = nat.alloc(dev.id, N, 'f32'), z = nat.alloc(dev.id, N, 'f32');
const prog = nat.compile(dev.id, [
  { kernel: 'fill', inputs: [], outputs: [x], attrs: { N, value: 1.5 } },
  { kernel: 'fill', inputs: [], outputs: [z], attrs: { N, value: 1.5 } },
  { kernel: '@fault', inputs: [], outputs: [x], attrs: { point: 2 } },
  { kernel: '@mark', inputs: [], outputs: [] },
  { kernel: 'copy', inputs: [x], outputs: [y], attrs: { N } },
  { kernel: '@fault', inputs: [], outputs: [y], attrs: { point: 5 } },
  { kernel: '@fault', inputs: [], outputs: [z], attrs: { point: 5 } },
]);
after(() => nat.releaseProgram(prog));

const read = (h: number) => nat.read(h) as Float32Array;
const bitsOf = (a: Float32Array) => new Uint32Array(a.buffer.slice(0));
const run = (fault?: NativeFault) => nat.runWith(prog, [], [y], fault);
const popcount = (v: number) => v.toString(2).split('').filter((c) => c === '1').length;

describe('fault kinds at a @fault op', () => {
  it('unarmed: no effect, every run', async () => {
    for (let i = 0; i < 3; i++) {
      const r = await run();
      assert.deepEqual(Array.from(read(y)), Array(N).fill(1.5));
      assert.deepEqual(Array.from(read(z)), Array(N).fill(1.5));
      assert.equal(r.values[0], 1.5);
    }
  });

  it("'nan' writes NaN at that element of the op's buffer, before what follows reads it; only in that run", async () => {
    await run({ point: 2, kind: 'nan', index: 3 });
    const got = Array.from(read(y));
    assert.ok(Number.isNaN(got[3]), 'copied from x after the fault');
    assert.deepEqual(got.filter((_, i) => i !== 3), Array(N - 1).fill(1.5));
    await run();
    assert.deepEqual(Array.from(read(y)), Array(N).fill(1.5), 'the next run is unarmed');
  });

  it("'bitflip' changes exactly one bit, the lowest mantissa bit, of that element only; once per run (the first op of its point)", async () => {
    const clean = bitsOf(Float32Array.of(1.5))[0]!;
    await run({ point: 5, kind: 'bitflip', index: 6 });
    const bits = bitsOf(read(y));
    bits.forEach((b, i) => {
      if (i === 6) {
        assert.equal(popcount((b ^ clean) >>> 0), 1, 'one bit');
        assert.equal((b ^ clean) >>> 0, 1, 'the lowest mantissa bit');
      } else assert.equal(b, clean, `element ${i} untouched`);
    });
    assert.deepEqual(Array.from(read(z)), Array(N).fill(1.5), 'the second point-5 op did nothing');
    assert.deepEqual(Array.from(read(x)), Array(N).fill(1.5), 'the point-2 buffer untouched');
  });

  it("'stall' sleeps at its point (a lower bound on the time, and on the mark after it)", async () => {
    const t0 = performance.now();
    const r = await run({ point: 2, kind: 'stall', ms: 120 });
    assert.ok(performance.now() - t0 >= 115, `the run took ${performance.now() - t0} ms`);
    assert.ok(r.marks[0]! >= 115, `the mark after the stall is at ${r.marks[0]} ms`);
    assert.deepEqual(Array.from(read(y)), Array(N).fill(1.5));
  });

  it("'throw' rejects naming the point and the device, as a native error, and the device keeps working", async () => {
    await assert.rejects(run({ point: 5, kind: 'throw' }), (e: Error & { code?: string }) =>
      e.message.includes(`injected fault at point 5 on ${dev.name}`) && e.code === 'TL_NATIVE');
    await run();
    assert.deepEqual(Array.from(read(y)), Array(N).fill(1.5));
  });
});

describe('bad fault specs are rejected when runWith is called, naming the field; nothing runs', () => {
  const cases: Array<[string, unknown, ErrorConstructor, RegExp]> = [
    ['not an object', 5, TypeError, /fault must be an object/],
    ['no kind', { point: 2 }, TypeError, /fault\.kind/],
    ['unknown kind', { point: 2, kind: 'boom' }, RangeError, /fault\.kind .* got 'boom'/],
    ['no point', { kind: 'throw' }, TypeError, /fault\.point/],
    ['point outside 0..15', { point: 16, kind: 'throw' }, RangeError, /fault\.point must be an integer in \[0, 16\), got 16/],
    ['fractional point', { point: 2.5, kind: 'throw' }, RangeError, /fault\.point/],
    ['a point the program lacks', { point: 3, kind: 'throw' }, RangeError, /fault\.point 3 has no '@fault' op in this program \(its points: 2, 5\)/],
    ['stall without ms', { point: 2, kind: 'stall' }, TypeError, /fault\.ms/],
    ['negative ms', { point: 2, kind: 'stall', ms: -1 }, RangeError, /fault\.ms must be finite and >= 0, got -1/],
    ['infinite ms', { point: 2, kind: 'stall', ms: Infinity }, RangeError, /fault\.ms/],
    ['nan without index', { point: 2, kind: 'nan' }, TypeError, /fault\.index/],
    ['index past the buffer', { point: 2, kind: 'nan', index: N }, RangeError, /fault\.index must be an integer in \[0, 8\)/],
    ['negative index', { point: 5, kind: 'bitflip', index: -1 }, RangeError, /fault\.index/],
  ];
  for (const [what, spec, cls, re] of cases)
    it(what, () => {
      nat.write(y, new Float32Array(N).fill(9));
      assert.throws(() => run(spec as NativeFault), (e: Error) => e instanceof cls && re.test(e.message));
      assert.deepEqual(Array.from(read(y)), Array(N).fill(9), 'nothing ran');
    });

  it("'@fault' ops are checked when compiled: one f32 output, an integer point in [0, 16); '@sleep' and '@poison' are gone", () => {
    const i32 = nat.alloc(dev.id, 2, 'i32');
    try {
      assert.throws(() => nat.compile(dev.id, [{ kernel: '@fault', inputs: [], outputs: [x] }]), /attribute 'point' must be a number/);
      assert.throws(() => nat.compile(dev.id, [{ kernel: '@fault', inputs: [], outputs: [x], attrs: { point: 16 } }]), /'point' must be an integer in \[0, 16\)/);
      assert.throws(() => nat.compile(dev.id, [{ kernel: '@fault', inputs: [], outputs: [], attrs: { point: 1 } }]), /takes one f32 buffer/);
      assert.throws(() => nat.compile(dev.id, [{ kernel: '@fault', inputs: [], outputs: [i32], attrs: { point: 1 } }]), /takes one f32 buffer; buffer #\d+ is i32/);
      for (const gone of ['@sleep', '@poison'])
        assert.throws(() => nat.compile(dev.id, [{ kernel: gone, inputs: [], outputs: [x], attrs: { ms: 1, index: 0 } }]), /unknown special op/);
    } finally {
      nat.free(i32);
    }
  });
});

describe("a '@fault' with wrap and base (a gradient's factor: Note [Shared gradients])", () => {
  it("an index in [from, to) of the point's plain buffer hits element (index − base) mod wrap of its own; other indices reach the plain op", async () => {
    const big = nat.alloc(dev.id, 40, 'f32'), small = nat.alloc(dev.id, 6, 'f32');
    const p = nat.compile(dev.id, [
      { kernel: 'fill', inputs: [], outputs: [big], attrs: { N: 40, value: 1 } },
      { kernel: 'fill', inputs: [], outputs: [small], attrs: { N: 6, value: 1 } },
      { kernel: '@fault', inputs: [], outputs: [small], attrs: { point: 3, from: 10, to: 30, wrap: 4, base: 8 } },
      { kernel: '@fault', inputs: [], outputs: [big], attrs: { point: 3 } },
    ]);
    const nans = (h: number) => Array.from(read(h)).flatMap((v, i) => (Number.isNaN(v) ? [i] : []));
    try {
      await nat.runWith(p, [], [], { point: 3, kind: 'nan', index: 23 }); // (23 − 8) mod 4 = 3
      assert.deepEqual([nans(small), nans(big)], [[3], []]);
      await nat.runWith(p, [], [], { point: 3, kind: 'nan', index: 35 }); // outside [10, 30): the plain op's
      assert.deepEqual([nans(small), nans(big)], [[], [35]]);
      assert.throws(() => nat.runWith(p, [], [], { point: 3, kind: 'nan', index: 40 }), /fault\.index must be an integer in \[0, 40\)/, "the plain op's buffer bounds the index");
      assert.throws(() => nat.compile(dev.id, [{ kernel: '@fault', inputs: [], outputs: [small], attrs: { point: 3, from: 10, to: 30, wrap: 4 } }]), /attribute 'base' must be a number/);
      assert.throws(() => nat.compile(dev.id, [{ kernel: '@fault', inputs: [], outputs: [small], attrs: { point: 3, wrap: 7, base: 0 } }]), /'wrap' must be an integer in \[1, 7\)/);
    } finally {
      nat.releaseProgram(p);
      [big, small].forEach((h) => nat.free(h));
    }
  });
});

describe("a 'throw' in a collective's program", () => {
  it('fails that tower and aborts its peer at once, naming the tower that failed', async () => {
    const bufs = devs.map((d) => nat.alloc(d.id, N, 'f32'));
    const comm = nat.createComm(bufs, naiveSchedule({ ranks: 2, length: N }), 20_000);
    const progs = devs.map((d, rank) =>
      nat.compile(d.id, [
        { kernel: '@fault', inputs: [], outputs: [bufs[rank]!], attrs: { point: 3 } },
        { kernel: '@collective', inputs: [], outputs: [], attrs: { comm, rank } },
      ]),
    );
    try {
      const [a, b] = await Promise.allSettled([nat.runWith(progs[0]!, [], []), nat.runWith(progs[1]!, [], [], { point: 3, kind: 'throw' })]);
      assert.equal(b.status, 'rejected');
      assert.match((b as PromiseRejectedResult).reason.message, new RegExp(`injected fault at point 3 on ${devs[1]!.name}`));
      assert.equal(a.status, 'rejected');
      // Aborted by the failing tower (a deadline would say 'timed out'), so it did not wait for its deadline.
      assert.match((a as PromiseRejectedResult).reason.message, new RegExp(`stopped: tower on ${devs[1]!.name} failed: injected fault`));
    } finally {
      progs.forEach((p) => nat.releaseProgram(p));
      nat.releaseComm(comm);
      bufs.forEach((h) => nat.free(h));
    }
  });
});
