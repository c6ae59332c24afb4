// Fault injection for the repository's tests (not exported by the package): faults armed in the production step
// program through the one step path (contract section 1), and killing a tower's worker as a crash would.
import { internalsOf } from '../coordinator/internals.js';
import type { FaultPlan } from '../coordinator/step.js';
import type { FaultSpec } from '../tower-port/protocol.js';
import { WorkerTowerPort } from '../tower-port/worker-port.js';
import type { TowerError } from '../errors.js';

/**
 * The step program's fault points, as the tower numbers them (contract section 1; src/model exports FaultPoint with
 * the same numbers): forward, backward (stalls here show as phase 'backward'), gradient (this tower's own gradient,
 * before the local norms), reduce, received (right after the all-reduce), update.
 */
export const FaultPoint = { forward: 0, backward: 1, gradient: 2, reduce: 3, received: 4, update: 5 } as const;
export type FaultPointName = keyof typeof FaultPoint;

/** A fault by point name: { at: 'gradient', kind: 'nan', index: 3 }. */
export type Fault = Omit<FaultSpec, 'point'> & { at: FaultPointName };

export function faultSpec(f: Fault): FaultSpec {
  const { at, ...rest } = f;
  return { point: FaultPoint[at], ...rest };
}

/**
 * Arms faults for the runtime's next train() runs: `plan(step, rank)` (1-based step) returns the fault for that
 * tower's step, or undefined. The faulty step runs the same compiled program, through the same call, as every other.
 */
export function injectFaults(runtime: object, plan: ((step: number, rank: number) => Fault | undefined) | undefined): void {
  const faults: FaultPlan | undefined = plan && ((step, rank) => {
    const f = plan(step, rank);
    return f && faultSpec(f);
  });
  internalsOf(runtime).faults = faults;
}

/** Ends tower `rank`'s worker thread abruptly, as a crash would; resolves with the death the runtime sees. */
export function killTower(runtime: object, rank: number): Promise<TowerError> {
  const port = internalsOf(runtime).towers.ports[rank];
  if (!(port instanceof WorkerTowerPort)) throw new Error(`tower ${rank} has no worker thread to kill (in-process towers die with the process)`);
  return port.kill();
}
