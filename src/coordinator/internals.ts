// A runtime's internals for the repository's own tests (fault injection, killing a tower): reachable only by
// importing this module, which the package does not export. Nothing on the public Runtime type.
import type { TowerSet } from './towers.js';
import type { FaultPlan } from './step.js';

export interface RuntimeInternals {
  towers: TowerSet;
  /** Faults armed per (step, rank) in the production step program (contract section 1). */
  faults: FaultPlan | undefined;
}

const table = new WeakMap<object, RuntimeInternals>();

export function attachInternals(runtime: object, internals: RuntimeInternals): void {
  table.set(runtime, internals);
}

export function internalsOf(runtime: object): RuntimeInternals {
  const i = table.get(runtime);
  if (!i) throw new Error('not a towerline runtime');
  return i;
}
