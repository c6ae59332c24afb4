// The float64 reference's kernel definitions: tensor types, argument checks and the registry (src/reference/kernels.ts).

/** f32 buffers are Float64Array here; i32 are Int32Array; u8 are Uint8Array. */
export type RefTensor = Float64Array | Int32Array | Uint8Array;
export type RefKernel = (inputs: RefTensor[], outputs: RefTensor[], attrs: Record<string, number>) => void;

export type RefDType = 'f32' | 'i32' | 'u8';

/** Argument names and dtypes of a kernel, in order; `optionalOutputs` trailing outputs may be left out. */
export interface RefSignature {
  readonly inputs: ReadonlyArray<readonly [string, RefDType]>;
  readonly outputs: ReadonlyArray<readonly [string, RefDType]>;
  readonly optionalOutputs?: number;
}

export const DEVICE = 'ref';

// ---------------------------------------------------------------------------------------------------------------
// Checks. Every kernel runs all of its checks before it writes anything, so a failing op leaves outputs unchanged.

export function fail(op: string, msg: string): never {
  throw new Error(`${op} (${DEVICE}): ${msg}`);
}

export function dtypeOf(t: RefTensor): RefDType {
  if (t instanceof Float64Array) return 'f32';
  if (t instanceof Int32Array) return 'i32';
  return 'u8';
}

/** A shape attribute: required, a non-negative integer. */
export function dim(op: string, attrs: Record<string, number>, name: string): number {
  const v = attrs[name];
  if (v === undefined) fail(op, `missing attribute ${name}`);
  if (!Number.isInteger(v) || v < 0) fail(op, `attribute ${name} must be a non-negative integer, got ${v}`);
  return v;
}

/** A numeric attribute: required unless a default is given, finite. */
export function num(op: string, attrs: Record<string, number>, name: string, dflt?: number): number {
  const v = attrs[name] ?? dflt;
  if (v === undefined) fail(op, `missing attribute ${name}`);
  if (!Number.isFinite(v)) fail(op, `attribute ${name} must be finite, got ${v}`);
  return v;
}

/** A 0/1 flag attribute. */
export function flag(op: string, attrs: Record<string, number>, name: string): boolean {
  const v = attrs[name] ?? 0;
  if (v !== 0 && v !== 1) fail(op, `attribute ${name} must be 0 or 1, got ${v}`);
  return v === 1;
}

export function need(op: string, arg: string, t: RefTensor, n: number, shape: string): void {
  if (t.length < n) fail(op, `${arg} has ${t.length} elements, needs ${n} (${shape})`);
}

/** Index checks name the position and the value, e.g. "label 7 at row 2 is outside [0, 5)". */
export function checkRange(op: string, what: string, at: string, idx: Int32Array, count: number, hi: number): void {
  for (let b = 0; b < count; b++) {
    const v = idx[b];
    if (v < 0 || v >= hi) fail(op, `${what} ${v} at ${at} ${b} is outside [0, ${hi})`);
  }
}

// Narrowing accessors: the wrapper in `defineKernel` has already checked presence and dtype, these only give the
// compiler the concrete array type.
export function f64(t: RefTensor | undefined): Float64Array {
  if (!(t instanceof Float64Array)) throw new Error('reference kernel: expected Float64Array');
  return t;
}
export function i32(t: RefTensor | undefined): Int32Array {
  if (!(t instanceof Int32Array)) throw new Error('reference kernel: expected Int32Array');
  return t;
}
export function u8(t: RefTensor | undefined): Uint8Array {
  if (!(t instanceof Uint8Array)) throw new Error('reference kernel: expected Uint8Array');
  return t;
}

export const signatures: Record<string, RefSignature> = {};
export const kernels: Record<string, RefKernel> = {};

/** Registers a kernel behind a wrapper that checks argument counts and dtypes against its signature. */
export function defineKernel(name: string, sig: RefSignature, body: RefKernel): void {
  const required = sig.outputs.length - (sig.optionalOutputs ?? 0);
  signatures[name] = sig;
  kernels[name] = (inputs, outputs, attrs) => {
    if (inputs.length !== sig.inputs.length) {
      fail(name, `takes ${sig.inputs.length} inputs, got ${inputs.length}`);
    }
    if (outputs.length < required || outputs.length > sig.outputs.length) {
      const want = required === sig.outputs.length ? `${required}` : `${required} to ${sig.outputs.length}`;
      fail(name, `takes ${want} outputs, got ${outputs.length}`);
    }
    const check = (t: RefTensor, [arg, dt]: readonly [string, RefDType]): void => {
      if (dtypeOf(t) !== dt) fail(name, `${arg} must be ${dt}, got ${dtypeOf(t)}`);
    };
    inputs.forEach((t, k) => check(t, sig.inputs[k]));
    outputs.forEach((t, k) => check(t, sig.outputs[k]));
    body(inputs, outputs, attrs);
  };
}

/** hyper must reach the highest slot the kernel reads. */
export function needHyper(op: string, hyper: Float64Array, slot: number): void {
  need(op, 'hyper', hyper, slot + 1, `reads hyper[${slot}]`);
}
