// The device grammar (Note [Device grammar]): one meaning for every kind, and the old 'cpu:N' refused with the
// spelling to use instead.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { parseDevices } from '../src/devices.js';
import { ConfigError } from '../src/errors.js';

const labels = (spec: string | string[]) => parseDevices(spec).map((s) => s.label);

it('kind:i is one tower on device i, for CPUs as for GPUs', () => {
  assert.deepEqual(parseDevices('cpu:0'), [{ kind: 'cpu', index: 0, label: 'cpu:0' }]);
  assert.deepEqual(parseDevices('cpu:1'), [{ kind: 'cpu', index: 1, label: 'cpu:1' }]);
  assert.deepEqual(labels('cpu:0,cpu:2'), ['cpu:0', 'cpu:2']);
  assert.deepEqual(labels(['cpu:3', 'cpu:1']), ['cpu:3', 'cpu:1']);
});

it("several towers: 'cpu*3' = 'cpu:0-2'; 'xk' puts k towers on each device named", () => {
  assert.deepEqual(labels('cpu*3'), ['cpu:0', 'cpu:1', 'cpu:2']);
  assert.deepEqual(labels('cpu:0-2'), ['cpu:0', 'cpu:1', 'cpu:2']);
  assert.deepEqual(labels('cpu:4-5'), ['cpu:4', 'cpu:5']);
  assert.deepEqual(labels('cpu:0x2'), ['cpu:0#0', 'cpu:0#1']);
  assert.deepEqual(labels('cpu:0-1x2'), ['cpu:0#0', 'cpu:0#1', 'cpu:1#0', 'cpu:1#1']);
  assert.deepEqual(labels('cpu*1'), ['cpu:0']);
  assert.deepEqual(parseDevices('cpu:0x2').map((s) => s.index), [0, 0]);
});

it("the old 'cpu:N' (N towers) is refused, saying exactly what to write", () => {
  assert.throws(() => parseDevices('cpu:3'), (e: Error) => e instanceof ConfigError && e.field === 'devices' && /'cpu:3' now means CPU device 3/.test(e.message) && /write 'cpu\*3' \(or 'cpu:0-2'\)/.test(e.message) && /'cpu:3x1'/.test(e.message));
  assert.deepEqual(labels('cpu:3x1'), ['cpu:3'], 'the spelling the error offers for one tower on device 3 works');
});

it('bad lists are ConfigErrors on devices', () => {
  for (const [spec, msg] of [
    ['', /expected at least one device/],
    ['cpu', /cannot read 'cpu'/],
    ['cpu:all', /no 'all'; write 'cpu\*N'/],
    ['cpu:2-1', /empty range/],
    ['cpu*0', /asks for 0 towers/],
    ['cpu:0x0', /use x1 or more/],
    ['cpu:0,cpu:0', /'cpu:0' is listed twice/],
    ['cpu*5000', /asks for 5000 towers, more than the limit of 64/], // bounded before any device is looked up
    ['tpu:0', /names device kind 'tpu'/],
  ] as const)
    assert.throws(() => parseDevices(spec), (e: Error) => e instanceof ConfigError && e.field === 'devices' && msg.test(e.message), spec);
});
