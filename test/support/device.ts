// The device the backend-parameterised suites run on: cpu:0 by default, TOWERLINE_TEST_DEVICE=cuda:0 on a GPU box.
import { NativeDevice } from '../../src/backend/native-device.js';

export function testDeviceSpec(): { kind: string; index: number; label: string } {
  const spec = process.env.TOWERLINE_TEST_DEVICE ?? 'cpu:0';
  const m = /^([a-z]+):(\d+)$/.exec(spec);
  if (!m) throw new Error(`TOWERLINE_TEST_DEVICE must look like 'cpu:0' or 'cuda:0', got '${spec}'`);
  return { kind: m[1]!, index: Number(m[2]), label: spec };
}

export function openTestDevice(): NativeDevice {
  const s = testDeviceSpec();
  return NativeDevice.open(s.kind, s.index);
}
