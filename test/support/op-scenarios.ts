// The op lists a tower compiles for each preset model and a model with every layer kind: every program of a
// training run (steps alone and in a collective, from host arrays and from a device dataset, evaluation with and
// without the EMA, replica hashes, the weight broadcast), recorded without running anything.
import { Tower } from '../../src/model/tower.js';
import { blockNetwork, cifar10Cnn, mnistMlp, type ModelSpec } from '../../src/model/spec.js';
import type { TrainingOptions } from '../../src/model/optimizer.js';
import type { Op } from '../../src/backend/backend.js';
import { RecordingBackend } from './recording-backend.js';

/** Every layer kind, with a non-trainable prefix (no gradient before the first conv) and both activation forms. */
export const everyLayerKind: ModelSpec = {
  name: 'every-layer-kind',
  input: { shape: [9, 9, 2] },
  layers: [
    { type: 'maxpool', pool: [2, 2], strides: [1, 1], padding: 'same' },
    { type: 'lrn', depthRadius: 1, alpha: 0.01, beta: 0.75 },
    { type: 'dropout', rate: 0.25 },
    { type: 'relu' },
    { type: 'conv2d', filters: 4, kernel: [3, 3], strides: [2, 2], padding: 'valid', l2: 0.01 },
    { type: 'relu' },
    { type: 'maxpool', pool: [2, 2], padding: 'same' },
    { type: 'lrn', depthRadius: 2 },
    { type: 'conv2d', name: 'c2', filters: 3, kernel: [2, 2], activation: 'tanh' },
    { type: 'dropout', rate: 0.5, seed: 11 },
    { type: 'flatten' },
    { type: 'dense', units: 6, activation: 'sigmoid', l2: 0.001 },
    { type: 'reshape', shape: [2, 3] },
    { type: 'flatten' },
    { type: 'dense', name: 'd2', units: 5 },
    { type: 'tanh' },
    { type: 'sigmoid' },
    { type: 'dense', units: 3, activation: 'relu' },
  ],
};

export const scenarios: Array<{ label: string; spec: ModelSpec; training: TrainingOptions; image?: { height: number; width: number; channels: number } }> = [
  { label: 'mnistMlp', spec: mnistMlp(), training: { optimizer: { type: 'momentum', lr: 0.1, momentum: 0.9 }, emaDecay: 0.999 } },
  { label: 'cifar10Cnn', spec: cifar10Cnn(), training: { optimizer: { type: 'sgd', lr: 0.1 } }, image: { height: 32, width: 32, channels: 3 } },
  { label: 'blockNetwork', spec: blockNetwork(), training: { optimizer: { type: 'adam', lr: 1e-4, beta1: 0.5, beta2: 0.9 }, clipNorm: 5 } },
  { label: 'everyLayerKind', spec: everyLayerKind, training: { optimizer: { type: 'adam', lr: 0.01 }, clipNorm: 1, emaDecay: 0.9 }, image: { height: 11, width: 10, channels: 2 } },
];

/** Drives a tower through every program it compiles and returns the recorder (before dispose) and the tower. */
export async function recordScenario(s: (typeof scenarios)[number]): Promise<{ rec: RecordingBackend; tower: Tower }> {
  const rec = new RecordingBackend();
  const tower = new Tower(rec, s.spec, { maxBatch: 8, training: s.training });
  tower.initWeights(1);
  const B = 4;
  const D = tower.inputDim;
  await tower.trainStep({ kind: 'direct', x: new Float32Array(B * D), labels: new Int32Array(B) }, 0.1, 1);
  const count = 10;
  const plain = tower.uploadDataset(new Uint8Array(count * D), new Uint8Array(count), count);
  tower.stepLaunch(8, plain);
  tower.stepLaunch(B, plain, { comm: 1001, rank: 1 });
  if (s.image) {
    const { height, width, channels } = s.image;
    const random = tower.uploadDataset(new Uint8Array(count * height * width * channels), new Uint8Array(count), count, 1, { kind: 'cropFlipStandardize', height, width, channels, mode: 'random' });
    const center = tower.uploadDataset(new Uint8Array(count * height * width * channels), new Uint8Array(count), count, 1, { kind: 'cropFlipStandardize', height, width, channels, mode: 'center' });
    tower.stepLaunch(B, random, { comm: 1001, rank: 1 });
    await tower.evaluate(center);
  }
  await tower.evaluate(plain);
  if (s.training.emaDecay !== undefined) await tower.evaluate(plain, { useEma: true });
  await tower.replicaHashes();
  await tower.runWeightCollective({ comm: 1002, rank: 1 });
  return { rec, tower };
}

/** Special ops that are not part of the numerics: the fault points (absent from the snapshot taken before them). */
export const notFault = (op: Op): boolean => op.kernel !== '@fault';
