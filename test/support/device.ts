// The device the backend-parameterised suites run on: cpu:0 by default, TOWERLINE_TEST_DEVICE=cuda:0 on a GPU box.
//
// Note [GPU tests fail, never skip]: a GPU run asked for with TOWERLINE_TEST_DEVICE=cuda:N must fail when the
// addon has no CUDA backend (a build that fell back to CPU-only) or the driver reports too few GPUs. Were it to
// skip, a broken GPU build would read as a green run. Suites open their device at load time through
// openTestDevice() or ask cudaGpusForSuite(), both of which throw then, so the whole file fails with the reason.
import { NativeDevice } from '../../src/backend/native-device.js';
import { native } from '../../src/native/addon.js';

export function testDeviceSpec(): { kind: string; index: number; label: string } {
  const spec = process.env.TOWERLINE_TEST_DEVICE ?? 'cpu:0';
  const m = /^([a-z]+):(\d+)$/.exec(spec);
  if (!m) throw new Error(`TOWERLINE_TEST_DEVICE must look like 'cpu:0' or 'cuda:0', got '${spec}'`);
  return { kind: m[1]!, index: Number(m[2]), label: spec };
}

/** The CUDA GPUs this build and driver offer (0 without a CUDA backend or driver). */
export function cudaGpus(): number {
  return native().backendKinds().includes('cuda') ? native().deviceCount('cuda') : 0;
}

/** Throws unless `kind` is built into the addon and has a device `index` (see Note [GPU tests fail, never skip]). */
function requireDevice(kind: string, index: number, label: string): void {
  const kinds = native().backendKinds();
  if (!kinds.includes(kind))
    throw new Error(`TOWERLINE_TEST_DEVICE=${label} asks for the ${kind} backend, but this addon has only ${kinds.join(', ')}: ` +
      `rebuild on a machine with nvcc and cuBLAS (npm run build:native must print "towerline: CUDA backend ON"; see docs/gpu.md)`);
  const count = native().deviceCount(kind);
  if (index >= count)
    throw new Error(`TOWERLINE_TEST_DEVICE=${label}: the ${kind} backend reports ${count} device(s), so ${label} does not exist ` +
      `(no GPU or driver here?); run the GPU suite on a machine with a GPU, or unset TOWERLINE_TEST_DEVICE for cpu:0`);
}

export function openTestDevice(): NativeDevice {
  const s = testDeviceSpec();
  requireDevice(s.kind, s.index, s.label);
  return NativeDevice.open(s.kind, s.index);
}

/**
 * For suites that need GPUs (test/gpu-towers.test.ts): the GPU count, and a skip reason when there are none and no
 * GPU run was asked for (plain `npm test`). When TOWERLINE_TEST_DEVICE names cuda:N and the build or the machine has
 * no such GPU, this throws instead (Note [GPU tests fail, never skip]).
 */
export function cudaGpusForSuite(): { gpus: number; skip: string | false } {
  const s = testDeviceSpec();
  if (s.kind === 'cuda') requireDevice(s.kind, s.index, s.label);
  const gpus = cudaGpus();
  return { gpus, skip: gpus === 0 && 'no CUDA devices (this suite is for GPU machines: npm run test:gpu)' };
}
