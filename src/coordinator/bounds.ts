// Bounds checked before step 1, with errors naming the option: the batch against the data set, and the memory the
// model and the batch need against what the devices have. (Tower counts are bounded in src/devices.ts, chunk sizes
// in src/scheduler/accept.ts.)
import os from 'node:os';
import type { Backend, DType } from '../backend/backend.js';
import { ConfigError } from '../errors.js';
import { TowerMemory } from '../model/memory.js';
import { buildNetwork } from '../model/network.js';
import { parseTrainingOptions, slotCount, type TrainingOptions } from '../model/optimizer.js';
import type { ResolvedModelSpec } from '../model/spec.js';
import type { LabeledSet } from '../data/mnist.js';
import { native } from '../native/addon.js';

/** A batch larger than the data set, and a kept last batch too small to split, fail before anything is allocated. */
export function checkBatch(data: { batchSize: number; lastBatch: 'drop' | 'keep' }, count: number, towers: number): void {
  const B = data.batchSize;
  if (B > count)
    throw new ConfigError(
      `data.batchSize: a batch of ${B} is larger than the training set (${count} examples), so every step would use the whole set ` +
        `padded to ${B} rows (or no step at all when a partial last batch is dropped); use a batch of at most ${count}`,
      'data.batchSize',
    );
  const tail = count % B;
  if (data.lastBatch === 'keep' && tail > 0 && tail < towers)
    throw new ConfigError(
      `data.lastBatch: 'keep' ends every epoch with a batch of ${tail} (${count} examples, batches of ${B}), which cannot be ` +
        `split over ${towers} towers (each needs at least one example); use lastBatch 'drop', or another batch size`,
      'data.lastBatch',
    );
}

/** A Backend that only counts what a tower would allocate. */
function countingBackend(): { backend: Backend; bytes: () => number } {
  let bytes = 0;
  let next = 1;
  const size: Record<DType, number> = { f32: 4, i32: 4, u8: 1 };
  const backend = {
    name: 'count',
    kind: 'count',
    alloc: (numel: number, dtype: DType = 'f32') => {
      bytes += numel * size[dtype];
      return next++;
    },
    allocView: () => next++,
    free: () => undefined,
  } as unknown as Backend;
  return { backend, bytes: () => bytes };
}

/** Bytes one tower needs: its network at maxBatch (weights, gradients, optimizer slots, EMA, activations), its data sets. */
export function towerBytes(req: { spec: ResolvedModelSpec; maxBatch: number; training: TrainingOptions }, sets: LabeledSet[]): { model: number; data: number } {
  const c = countingBackend();
  const t = parseTrainingOptions(req.training);
  buildNetwork(req.spec, new TowerMemory(c.backend), req.maxBatch, { slots: slotCount(t.optimizer), ema: t.emaDecay !== undefined });
  return { model: c.bytes(), data: sets.reduce((n, s) => n + s.images.length + 4 * s.count, 0) };
}

const gb = (b: number) => `${(b / 2 ** 30).toFixed(2)} GB`;

/** What each device (the host for every CPU tower, each GPU for its towers) has, in bytes; undefined when unknown. */
function capacity(kind: string, index: number): { name: string; bytes: number } | undefined {
  if (kind === 'cpu') return { name: 'the host', bytes: os.totalmem() };
  const gpu = native().topology().gpus.find((g) => g.index === index);
  return gpu ? { name: `GPU ${index} (${gpu.name})`, bytes: gpu.memoryBytes } : undefined;
}

/** Fails before the build when the towers of some device would need more memory than it has. */
export function checkMemory(perTower: { model: number; data: number }, devices: string[], maxBatch: number): void {
  const need = perTower.model + perTower.data;
  const groups = new Map<string, number>();
  for (const label of devices) {
    const [kind, rest] = label.split(':');
    const key = kind === 'cpu' ? 'cpu' : `${kind}:${parseInt(rest ?? '0', 10)}`;
    groups.set(key, (groups.get(key) ?? 0) + 1);
  }
  for (const [key, towers] of groups) {
    const [kind, index] = key.split(':');
    const cap = capacity(kind!, Number(index ?? 0));
    if (!cap || need * towers <= cap.bytes) continue;
    throw new ConfigError(
      `memory: the model and batch need about ${gb(need)} per tower (model, optimizer state and activations for ${maxBatch} examples ` +
        `${gb(perTower.model)}, data sets ${gb(perTower.data)}), ${gb(need * towers)} for the ${towers} tower(s) on ${cap.name}, ` +
        `which has ${gb(cap.bytes)}. Use a smaller data.batchSize, fewer towers or a smaller model.`,
      'memory',
    );
  }
}
