// One training step on every tower, and the watchdog: when a step misses its deadline, ask each tower which phase
// it is in (towers waiting in the all-reduce are the victims; the others are the culprits) and say so.
import { TowerError, WatchdogError } from '../errors.js';
import type { FaultSpec, StepReply, StepRequest } from '../tower-port/protocol.js';
import type { TowerSet } from './towers.js';

/** Faults to arm, by (1-based step, rank): set only by tests, through src/testing/faults.ts. */
export type FaultPlan = (step: number, rank: number) => FaultSpec | undefined;

const PHASE_PROBE_MS = 1000;

export async function stepAll(towers: TowerSet, step: number, requests: StepRequest[], deadlineMs: number, faults: FaultPlan | undefined): Promise<StepReply[]> {
  if (towers.dead) throw new TowerError(towers.dead.device, 'step', towers.dead.causeText);
  try {
    return await towers.all((p, r) => p.step(requests[r]!, deadlineMs, faults?.(step, r)));
  } catch (e) {
    if (!(e instanceof TowerError) || !e.causeText.endsWith('(deadline)')) throw e;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<string>((resolve) => (timer = setTimeout(resolve, PHASE_PROBE_MS, 'unresponsive')));
    const phases = await Promise.all(towers.ports.map((p) => Promise.race([p.phase(), late]).catch(() => 'unresponsive')));
    clearTimeout(timer);
    const stuck = phases.map((p, r) => ({ p, r })).filter((x) => x.p !== 'reduce');
    const culprits = stuck.length > 0 ? stuck : phases.map((p, r) => ({ p, r }));
    const what = culprits.map((c) => `tower on ${towers.devices[c.r]} is in phase '${c.p ?? 'idle'}'`).join('; ');
    towers.abortGroup(); // frees the towers blocked in the all-reduce
    throw new WatchdogError(`step ${step} did not finish within ${deadlineMs} ms: ${what}`, culprits.map((c) => towers.devices[c.r]!), culprits[0]?.p ?? undefined);
  }
}
