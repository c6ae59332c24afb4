// Float64 reference of every kernel in docs/kernels.md: slow, plain loops, the yardstick for the cpu/cuda kernels.
// One file per family under kernels/; each registers its kernels with defineKernel (kernels/define.ts).
import { kernels, signatures, type RefKernel, type RefSignature } from './kernels/define.js';
import './kernels/layers.js';
import './kernels/elementwise.js';
import './kernels/optim.js';
import './kernels/fused.js';
import './kernels/input.js';
import './kernels/conv.js';
import './kernels/dropout.js';

export type { RefTensor, RefKernel, RefDType, RefSignature } from './kernels/define.js';
export { dropoutHash } from './kernels/dropout.js';

export const referenceKernels: Readonly<Record<string, RefKernel>> = Object.freeze(kernels);

/** Argument names and dtypes per kernel, so a backend can validate a program when it is compiled. */
export const referenceSignatures: Readonly<Record<string, RefSignature>> = Object.freeze(signatures);
