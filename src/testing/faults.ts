// Fault injection for the repository's tests (not exported by the package): faults armed in the production step
// program through the one step path (contract section 1), and killing a tower's worker as a crash would.
import { internalsOf } from '../coordinator/internals.js';
import type { FaultPlan } from '../coordinator/step.js';
import type { FaultSpec } from '../tower-port/protocol.js';
import { WorkerTowerPort } from '../tower-port/worker-port.js';
import type { TowerError } from '../errors.js';

import { FaultPoint, type FaultPointName } from '../model/fault.js';

export { FaultPoint, type FaultPointName };

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
