// runWith's reply (Note [Reply maker] in cpp/napi/async.h): the same RunResult shape whether the registered JS maker
// builds it or, for replies longer than its scratch, the addon does; pipelined replies never share memory.
import { after, it } from 'node:test';
import assert from 'node:assert/strict';
import { native } from '../src/native/addon.js';

const nat = native();
const dev = nat.openDevice('cpu', 70);
after(() => nat.closeDevice(dev.id));
const a = nat.alloc(dev.id, 4, 'f32'), b = nat.alloc(dev.id, 4, 'f32'), i = nat.alloc(dev.id, 4, 'i32');
const mark = { kernel: '@mark', inputs: [], outputs: [] };
const program = (marks: number) =>
  nat.compile(dev.id, [{ kernel: 'copy', inputs: [a], outputs: [b], attrs: { N: 4 } }, ...Array.from({ length: marks }, () => mark)]);
const small = program(5), large = program(300);  // 300 marks: longer than the maker's scratch (256 doubles)
after(() => [small, large].forEach((p) => nat.releaseProgram(p)));

const KEYS = ['values', 'marks', 'startMs', 'waitMs', 'guardTripped'];

for (const [name, prog, marks] of [['maker', small, 5], ['native fallback', large, 300]] as const) {
  it(`${name}: values, marks and status, in RunResult's shape`, async () => {
    const r = await nat.runWith(prog, [[a, new Float32Array([2.5, 0, 0, 0])], [i, new Int32Array([-7, 0, 0, 0])]], [b, i, a]);
    assert.deepEqual(Object.keys(r), KEYS);
    assert.ok(r.values instanceof Float64Array && r.marks instanceof Float64Array);
    assert.deepEqual([...r.values], [2.5, -7, 2.5]);
    assert.equal(r.marks.length, marks);
    for (let k = 1; k < marks; k++) assert.ok(r.marks[k]! >= r.marks[k - 1]! && r.marks[0]! >= 0, `marks in order at ${k}`);
    assert.ok(r.startMs > 0 && r.waitMs === 0 && r.guardTripped === false);
  });
}

it('two runs in flight: each reply keeps its own values', async () => {
  const p1 = nat.runWith(small, [[a, new Float32Array([1, 0, 0, 0])]], [b]);
  const p2 = nat.runWith(small, [[a, new Float32Array([2, 0, 0, 0])]], [b], undefined, true);
  const [r1, r2] = await Promise.all([p1, p2]);
  assert.deepEqual([r1.values[0], r2.values[0]], [1, 2]);
  assert.notEqual(r1.marks, r2.marks);
  assert.equal(r1.cancelled, undefined);
});
