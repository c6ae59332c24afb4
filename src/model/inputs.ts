// Data into a tower: labelled u8 datasets uploaded once, the random-crop parameters of each batch, the gather (or
// crop) ops that make a batch on the device, and the checked host writes of a batch.
import type { Backend, Op } from '../backend/backend.js';
import type { TowerMemory } from './memory.js';
import type { Network } from './network.js';

/** Examples already in device memory (uploaded once); a step then only sends row indices. */
export interface DeviceDataset {
  images: number;
  labels: number;
  count: number;
  dim: number;
  scale: number;
  /** Images stored larger than the model input, cropped (and flipped, standardised) natively per batch. */
  transform?: DeviceImageTransform;
}

/**
 * How an uploaded u8 NHWC image set becomes the model input: the CIFAR-10 tutorial's crop, horizontal flip and
 * per-image standardisation (kernel crop_flip_standardize_u8). 'random' crops take their [dy, dx, flip] per example
 * from Tower.setCropParams before each step (see src/data/cifar10.ts cropParams); 'center' crops are fixed.
 */
export interface ImageTransform {
  kind: 'cropFlipStandardize';
  /** Stored image size; the crop size is the model's input shape [OH, OW, C]. */
  height: number;
  width: number;
  channels: number;
  mode: 'random' | 'center';
}

export interface DeviceImageTransform {
  mode: 'random' | 'center';
  H: number;
  W: number;
  C: number;
  OH: number;
  OW: number;
  /** (maxBatch, 3) i32 params buffer the kernel reads. */
  params: number;
}

export type BatchSource =
  | { kind: 'indices'; dataset: DeviceDataset; indices: Int32Array }
  | { kind: 'direct'; x: Float32Array; labels: Int32Array };

export type BatchWrites = Array<[number, Float32Array | Int32Array]>;

export class TowerInputs {
  /** (maxBatch, 3) i32 [dy, dx, flip] of the next batch's random crops, allocated by the first 'random' upload. */
  private cropParams: number | undefined;
  private readonly backend: Backend;

  constructor(
    private readonly mem: TowerMemory,
    private readonly net: Network,
    private readonly maxBatch: number,
  ) {
    this.backend = mem.backend;
  }

  /** The random-crop params buffer, if a 'random' dataset was uploaded. */
  get crop(): number | undefined {
    return this.cropParams;
  }

  /** See Tower.uploadDataset. */
  upload(images: Uint8Array, labels: Uint8Array, count: number, scale: number, transform?: ImageTransform): DeviceDataset {
    const dim = images.length / count;
    const { inputShape, inputDim, spec } = this.net;
    let tr: DeviceImageTransform | undefined;
    if (transform) {
      const { height: H, width: W, channels: C } = transform;
      const [OH, OW, IC] = inputShape as [number, number, number];
      if (inputShape.length !== 3 || IC !== C || OH > H || OW > W)
        throw new RangeError(`uploadDataset: images of ${H}x${W}x${C} cannot be cropped to model '${spec.name}''s input [${inputShape.join(', ')}]; expected an input [OH, OW, ${C}] with OH <= ${H}, OW <= ${W}`);
      if (dim !== H * W * C)
        throw new RangeError(`uploadDataset: ${images.length} image bytes over ${count} examples is ${dim} per example; ${H}x${W}x${C} images have ${H * W * C}`);
      const params = transform.mode === 'random' ? (this.cropParams ??= this.mem.alloc(3 * this.maxBatch, 'i32')) : this.centralCrops(H, W, OH, OW);
      tr = { mode: transform.mode, H, W, C, OH, OW, params };
    } else if (!Number.isInteger(dim) || dim !== inputDim) {
      throw new RangeError(`uploadDataset: ${images.length} image bytes over ${count} examples is ${dim} per example; model '${spec.name}' expects ${inputDim}`);
    }
    if (labels.length !== count) throw new RangeError(`uploadDataset: ${labels.length} labels for ${count} examples`);
    const img = this.mem.alloc(images.length, 'u8');
    const lab = this.mem.alloc(count, 'u8');
    this.backend.copyIn(img, images);
    this.backend.copyIn(lab, labels);
    return { images: img, labels: lab, count, dim, scale, ...(tr ? { transform: tr } : {}) };
  }

  /** A params buffer of the central crop for every example (fixed: written once). */
  private centralCrops(H: number, W: number, OH: number, OW: number): number {
    const params = this.mem.alloc(3 * this.maxBatch, 'i32');
    const central = new Int32Array(3 * this.maxBatch);
    for (let b = 0; b < this.maxBatch; b++) {
      central[3 * b] = Math.floor((H - OH) / 2);
      central[3 * b + 1] = Math.floor((W - OW) / 2);
    }
    this.backend.copyIn(params, central);
    return params;
  }

  /** See Tower.setCropParams. */
  setCropParams(params: Int32Array): void {
    if (this.cropParams === undefined) throw new Error(`setCropParams on ${this.backend.name}: no dataset with random crops was uploaded`);
    if (params.length % 3 !== 0 || params.length > 3 * this.maxBatch)
      throw new RangeError(`setCropParams on ${this.backend.name}: ${params.length} values; expected 3 per example, at most ${this.maxBatch} examples`);
    this.backend.copyIn(this.cropParams, params);
  }

  /** The ops that fill x (B, inputDim) and labels (B) from a device dataset's rows idx; none for host batches. */
  ops(B: number, dataset?: DeviceDataset): Op[] {
    if (!dataset) return [];
    const { x, idx, labels } = this.net.buffers;
    const D = this.net.inputDim;
    const t = dataset.transform;
    return [
      t
        ? { kernel: 'crop_flip_standardize_u8', inputs: [dataset.images, idx, t.params], outputs: [x], attrs: { B, R: dataset.count, H: t.H, W: t.W, C: t.C, OH: t.OH, OW: t.OW } }
        : { kernel: 'gather_rows_u8', inputs: [dataset.images, idx], outputs: [x], attrs: { B, D, R: dataset.count, scale: dataset.scale } },
      { kernel: 'gather_labels_u8', inputs: [dataset.labels, idx], outputs: [labels], attrs: { B, R: dataset.count } },
    ];
  }

  /**
   * Checks a batch (its size with `checkBatch`, a host batch's values and labels) and lists what must be written
   * for it; nothing is written here, so bad input changes nothing.
   */
  writes(src: BatchSource, checkBatch: (B: number) => void): { B: number; writes: BatchWrites } {
    const { x, labels, idx } = this.net.buffers;
    if (src.kind === 'indices') {
      const B = src.indices.length;
      checkBatch(B);
      return { B, writes: [[idx, src.indices]] };
    }
    const B = src.labels.length;
    checkBatch(B);
    const { inputDim, outputDim } = this.net;
    if (src.x.length !== B * inputDim)
      throw new RangeError(`batch input on ${this.backend.name}: x has ${src.x.length} values, expected ${B} x ${inputDim} = ${B * inputDim}`);
    for (let i = 0; i < B; i++) {
      const l = src.labels[i]!;
      if (this.net.spec.loss === 'softmaxCrossEntropy' && !(l >= 0 && l < outputDim))
        throw new RangeError(`batch labels on ${this.backend.name}: label ${l} at row ${i} is outside [0, ${outputDim})`);
    }
    return { B, writes: [[x, src.x], [labels, src.labels]] };
  }
}
