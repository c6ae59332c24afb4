// A tower's state by name, copied to and from the host (checkpoints, tests; never on the training hot path).
import type { Backend } from '../backend/backend.js';
import type { Param } from './memory.js';

export interface NamedTensor {
  name: string;
  shape: number[];
  data: Float32Array;
}

/** Copies of each parameter's weights, gradient or EMA, by name. */
export function readWeights(backend: Backend, params: Param[], which: 'w' | 'g' | 'ema'): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  for (const p of params) {
    const h = which === 'w' ? p.w : which === 'g' ? p.g : p.ema;
    if (h === undefined) throw new Error(`no '${which}' buffers on this tower`);
    out.set(p.name, backend.copyOut(h) as Float32Array);
  }
  return out;
}

/** Each tensor of the state and its name: '<param>', 'optimizer/<param>/<k>', 'ema/<param>'. */
export function stateTensors(params: Param[]): Array<{ name: string; handle: number; p: Param }> {
  return params.flatMap((p) => [
    { name: p.name, handle: p.w, p },
    ...p.slots.map((h, k) => ({ name: `optimizer/${p.name}/${k}`, handle: h, p })),
    ...(p.ema !== undefined ? [{ name: `ema/${p.name}`, handle: p.ema, p }] : []),
  ]);
}

/** Everything a resumed run needs: weights, optimizer slots and the EMA. */
export function readState(backend: Backend, params: Param[]): NamedTensor[] {
  return stateTensors(params).map(({ name, handle, p }) => ({ name, shape: p.shape, data: backend.copyOut(handle) as Float32Array }));
}

/**
 * Restores readState()'s tensors. Checks every name and size first: a mismatched state changes nothing. Without
 * `weights`, the weights and EMA are only checked (a tower sharing them writes its own pieces: Note [Shared weights]).
 */
export function writeState(backend: Backend, params: Param[], model: string, tensors: Map<string, ArrayLike<number>>, weights = true): void {
  const plan = stateTensors(params).map(({ name, handle, p }): [number, ArrayLike<number>, boolean] => {
    const v = tensors.get(name);
    if (!v) throw new Error(`checkpoint has no tensor '${name}' that model '${model}' needs (is it from another model or optimizer?)`);
    if (v.length !== p.numel) throw new RangeError(`checkpoint tensor '${name}' has ${v.length} values; model '${model}' expects ${p.numel} (shape ${p.shape.join('x')})`);
    return [handle, v, handle === p.w || handle === p.ema];
  });
  for (const [h, v, isWeight] of plan) if (weights || !isWeight) backend.copyIn(h, v);
}

/** Sets the weights by parameter name; checks all first. */
export function writeWeights(backend: Backend, params: Param[], values: Map<string, ArrayLike<number>>): void {
  for (const p of params) {
    const v = values.get(p.name);
    if (!v) throw new Error(`writeWeights: no values for parameter '${p.name}'`);
    if (v.length !== p.numel) throw new RangeError(`writeWeights: '${p.name}' has ${p.numel} values (shape ${p.shape.join('x')}), given ${v.length}`);
  }
  for (const p of params) backend.copyIn(p.w, values.get(p.name)!);
}
