// The practical floor of an MLP train step on cpu:0: the step's GEMMs alone (the `matmul` kernel: the process's GEMM,
// OpenBLAS when it loads) at the step's exact shapes, nothing else. bench/mnist-step.ts prints our wall step against it.
// How it differs from the GEMMs inside a step (per-op marks of both, bench/mnist-profile.ts; issue 16's phase 4):
// - its products run back to back, so the GEMM pool never waits between them; a step has serial stretches between
//   its large GEMMs (Note [Pool spin] in cpp/cpu/gemm_threads.cc: the workers' spin adapts to them);
// - its small products (N = 10) read operands the large ones have evicted, so they take ~40-47 us each against
//   ~31 us for the step's dense_forward of the same shape, whose input the relu just wrote: about 35 us per step in
//   our favour, 1-3% of the ratio. Left as it is: this is the floor issue 16 defines (the GEMMs alone).
import type { Op } from '../src/backend/backend.js';
import { NativeDevice } from '../src/backend/native-device.js';
import { native } from '../src/native/addon.js';
import type { ModelSpec } from '../src/model/spec.js';

/** One GEMM: C (M,N) = op(A)·op(B), as the `matmul` kernel takes it. */
export interface GemmShape {
  M: number;
  N: number;
  K: number;
  transA: 0 | 1;
  transB: 0 | 1;
}

/**
 * The GEMMs of one train step of a dense-only MLP at batch B, as dense_forward / dense_backward call them
 * (cpp/cpu/kernels_layers.cc): per layer (I -> O) y = x·W (B,O,I); dW = xᵀ·dy (I,O,B); dx = dy·Wᵀ (B,I,O), the
 * last only above the first layer (Note [No gradient before training]: the input needs no gradient).
 */
export function mlpStepGemms(spec: ModelSpec, B: number): GemmShape[] {
  const dims = [spec.input.shape.reduce((a, b) => a * b, 1)];
  for (const l of spec.layers) {
    if (l.type !== 'dense') throw new Error(`mlpStepGemms: layer type '${l.type}' given; only dense layers have a GEMM floor here`);
    dims.push(l.units);
  }
  const out: GemmShape[] = [];
  for (let l = 0; l + 1 < dims.length; l++) {
    const I = dims[l]!, O = dims[l + 1]!;
    out.push({ M: B, N: O, K: I, transA: 0, transB: 0 });
    out.push({ M: I, N: O, K: B, transA: 1, transB: 0 });
    if (l > 0) out.push({ M: B, N: I, K: O, transA: 0, transB: 1 });
  }
  return out;
}

/** The `matmul` op of each shape on buffers of its own (inputs filled, every handle pushed to `handles`). */
export function floorOps(dev: NativeDevice, shapes: GemmShape[], handles: number[]): Op[] {
  const alloc = (n: number, fill: boolean) => {
    const h = dev.alloc(n);
    handles.push(h);
    if (fill) dev.copyIn(h, Float32Array.from({ length: n }, (_, i) => ((i * 7919) % 201) / 100 - 1));
    return h;
  };
  return shapes.map((s) => ({
    kernel: 'matmul',
    inputs: [alloc(s.M * s.K, true), alloc(s.K * s.N, true)],
    outputs: [alloc(s.M * s.N, false)],
    attrs: { ...s },
  }));
}

const PER_PROGRAM = 20;  // the step's GEMMs this many times per program, so the run's round trip is amortised

/** The GEMMs alone, ready to time: `stepsPerSec(n, steps)` runs about `steps` steps' GEMMs at n GEMM threads. */
export interface GemmFloor {
  stepsPerSec(threads: number, steps: number): Promise<number>;
  close(): Promise<void>;
}

/**
 * Opens the floor on a cpu:0 device of its own and warms it at each of `threads`. bench/mnist-step.ts times it rep by
 * rep right after our own step at the same thread count, so drift on a shared machine lands on both sides alike.
 */
export async function openGemmFloor(shapes: GemmShape[], threads: number[]): Promise<GemmFloor> {
  const dev = NativeDevice.open('cpu', 0);
  const handles: number[] = [];
  const one = floorOps(dev, shapes, handles);
  const program = dev.compile(Array.from({ length: PER_PROGRAM }, () => one).flat());
  for (const n of threads) {
    dev.gemmThreads = n;
    for (let i = 0; i < 3; i++) await dev.run(program);
  }
  return {
    async stepsPerSec(n, steps) {
      dev.gemmThreads = n;
      await dev.run(program); // settle at the new thread count
      const runs = Math.max(1, Math.round(steps / PER_PROGRAM));
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < runs; i++) await dev.run(program);
      return (runs * PER_PROGRAM) / (Number(process.hrtime.bigint() - t0) / 1e9);
    },
    async close() {
      dev.releaseProgram(program);
      handles.forEach((h) => dev.free(h));
      await dev.close();
    },
  };
}
