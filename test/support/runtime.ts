// Test helpers for suites that drive a whole runtime: open one on some devices, run a body, always close it.
import { createRuntime, type Runtime, type RuntimeOptions } from '../../src/runtime.js';

export type Algorithm = 'ring' | 'tree' | 'naive';

/** Runs f on a runtime over `devices` (with the given all-reduce algorithm, else the default) and closes it after. */
export function withRuntime<T>(devices: string, f: (rt: Runtime) => Promise<T>): Promise<T>;
export function withRuntime<T>(devices: string, algorithm: Algorithm, f: (rt: Runtime) => Promise<T>): Promise<T>;
export async function withRuntime<T>(devices: string, a: Algorithm | ((rt: Runtime) => Promise<T>), b?: (rt: Runtime) => Promise<T>): Promise<T> {
  // Real towers, each on its own device thread, even where they outnumber the cores (Note [CPU layout]).
  const layout = { extraTowers: 'threads' } as const;
  const opts: RuntimeOptions = typeof a === 'function' ? { devices, layout } : { devices, layout, reduction: { algorithm: a } };
  const f = typeof a === 'function' ? a : b!;
  const rt = await createRuntime(opts);
  try {
    return await f(rt);
  } finally {
    await rt.close();
  }
}

/** The two arrays hold the same bits (NaNs and signed zeros included). */
export function sameBits(a: Float32Array, b: Float32Array): boolean {
  return Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;
}
