// towerline's public surface: everything a user imports comes from here.
export type { Backend, DType, Op, HostArray } from './backend/backend.js';
export { NativeDevice } from './backend/native-device.js';
export { ReferenceBackend } from './reference/reference-backend.js';
export { Tower, type Param, type DeviceDataset, type BatchSource, type TowerOptions } from './model/tower.js';
export { parseModelSpec, mnistMlp, type ModelSpec, type LayerSpec, type InitSpec } from './model/spec.js';
export { parseTrainingOptions, type OptimizerSpec, type TrainingOptions } from './model/optimizer.js';
export { parseSchedule, learningRate, type ScheduleSpec } from './model/schedule.js';
export { loadMnist, type LabeledSet } from './data/mnist.js';
export { parseIdx, readIdx, DataError, type IdxArray } from './data/idx.js';
export { batchPlans, epochOrder, batchesPerEpoch, type BatchPlan } from './data/batches.js';
export { Rng } from './util/rng.js';
export { ConfigError } from './util/validate.js';
export { createRuntime, mnist, Runtime, TowerError, type RuntimeOptions, type TrainOptions, type TrainRun, type StepEvent, type RunEvent, type RunSummary, type TowerTimings } from './runtime.js';
export { ring } from './scheduler/ring.js';
export { tree } from './scheduler/tree.js';
export { naive } from './scheduler/naive.js';
export { validateSchedule, ScheduleError, REDUCE, COPY, type Schedule, type CollStep, type ReductionStrategy, type ScheduleRequest } from './scheduler/schedule.js';
export type { ReductionOptions } from './scheduler/select.js';
