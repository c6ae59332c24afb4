// towerline/advanced: the lower-level pieces under the runtime, for tools, experiments and tests. Stable but less
// friendly than the main entry: a Tower on one device, the native device and the float64 reference backend,
// schedule building blocks and the validator, and runtimes whose towers live in this thread.
import { Runtime } from './runtime.js';
import { connectLocalGroup } from './group/local-group.js';
import { inProcessPorts } from './tower-port/open.js';
import type { RuntimeOptions } from './options.js';

export type { Backend, DType, Op, HostArray } from './backend/backend.js';
export { NativeDevice } from './backend/native-device.js';
export { ReferenceBackend } from './reference/reference-backend.js';
export { ReferenceCollective } from './reference/reference-collective.js';
export { Tower, type Param, type DeviceDataset, type BatchSource, type TowerOptions, type ImageTransform, type StepTimings } from './model/tower.js';
export { parseModelSpec, type ResolvedModelSpec } from './model/spec.js';
export { parseTrainingOptions, type TrainingOptions } from './model/optimizer.js';
export { parseSchedule, learningRate } from './model/schedule.js';
export { loadMnist, type LabeledSet } from './data/mnist.js';
export { loadCifar10, parseCifar10Batch, generateCifar10, cropParams, randomInputs, CIFAR10_CLASSES, CIFAR10_FILES, type CropGeometry } from './data/cifar10.js';
export { parseIdx, readIdx, type IdxArray } from './data/idx.js';
export { batchPlans, epochOrder, batchesPerEpoch, type BatchPlan } from './data/batches.js';
export { Rng } from './util/rng.js';
export { validateSchedule, chunkBounds, segments } from './scheduler/schedule.js';
export { ringSchedule } from './scheduler/ring.js';
export { treeSchedule } from './scheduler/tree.js';
export { naiveSchedule } from './scheduler/naive.js';
export { broadcastSchedule } from './scheduler/broadcast.js';
export { planReduction } from './scheduler/select.js';
export { parseDevices, type DeviceSlot } from './devices.js';
export { shardSizes, splitIndices } from './coordinator/shard.js';
export type { TowerPort } from './tower-port/port.js';
export type { TowerGroup, ConnectGroup } from './group/group.js';

/**
 * A runtime whose towers live in this thread, without worker threads: on the devices' native backends, or on the
 * float64 reference backend ('reference': slow, exact, for checking coordinator logic). Same API as createRuntime.
 */
export function createInProcessRuntime(opts: RuntimeOptions & { backend?: 'native' | 'reference' }): Promise<Runtime> {
  const { backend = 'native', ...rest } = opts;
  return Runtime.open(rest, inProcessPorts(backend), connectLocalGroup);
}
