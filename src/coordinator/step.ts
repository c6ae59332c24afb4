// One training step on every tower, and the watchdog: when a step misses its deadline, ask each tower which phase
// it is in (towers waiting in the all-reduce are the victims; the others are the culprits) and say so.
import { TowerError, WatchdogError } from '../errors.js';
import type { FaultSpec, StepReply, StepRequest } from '../tower-port/protocol.js';
import type { TowerSet } from './towers.js';

/** Faults to arm, by (1-based step, rank): set only by tests, through src/testing/faults.ts. */
export type FaultPlan = (step: number, rank: number) => FaultSpec | undefined;

const PHASE_PROBE_MS = 1000;

/**
 * Every tower's step settles (each has its own deadline), so a failure is reported by its cause, not by whichever
 * tower answered first: a tower whose all-reduce was stopped because another tower failed ("all-reduce on cpu:2
 * (rank 2) stopped: tower on cpu:1 failed: ...") is a victim; the tower that failed by itself is named.
 */
function rootCause(errors: unknown[]): unknown {
  const victim = (e: unknown) => e instanceof TowerError && /\) stopped: /.test(e.causeText);
  const deadline = (e: unknown) => e instanceof TowerError && e.causeText.endsWith('(deadline)');
  return errors.find((e) => !victim(e) && !deadline(e)) ?? errors.find((e) => !victim(e)) ?? errors[0];
}

/** Every tower's settled step, in rank order. */
export type Settled = Array<PromiseSettledResult<StepReply>>;

/** The faults armed for `step` on each tower (undefined: none). */
export function faultsFor(faults: FaultPlan | undefined, step: number, towers: number): Array<FaultSpec | undefined> {
  return faults ? Array.from({ length: towers }, (_, r) => faults(step, r)) : NO_FAULTS;
}

const NO_FAULTS: Array<FaultSpec | undefined> = Object.freeze([]) as unknown as Array<FaultSpec | undefined>;

/**
 * Launches one step on every tower; never rejects (a dead tower's step settles rejected). `chained`: behind an
 * unconsumed step (Note [Pipelined steps] in pipeline.ts).
 */
export function launchAll(towers: TowerSet, requests: StepRequest[], deadlineMs: number, faults: Array<FaultSpec | undefined>, chained = false): Promise<Settled> {
  const dead = towers.dead;
  if (dead) return Promise.resolve(towers.ports.map(() => ({ status: 'rejected' as const, reason: new TowerError(dead.device, 'step', dead.causeText) })));
  const ports = towers.ports;
  if (ports.length === 1) return ports[0]!.step(requests[0]!, deadlineMs, faults[0], chained).then(oneFulfilled, oneRejected); // allSettled of one
  return Promise.allSettled(ports.map((p, r) => p.step(requests[r]!, deadlineMs, faults[r], chained)));
}

const oneFulfilled = (value: StepReply): Settled => [{ status: 'fulfilled', value }];
const oneRejected = (reason: unknown): Settled => [{ status: 'rejected', reason }];

/** The replies when every tower's step was fulfilled, else undefined (settleAll then finds the root cause). */
export function fulfilled(settled: Settled): StepReply[] | undefined {
  const replies: StepReply[] = [];
  for (const s of settled) {
    if (s.status !== 'fulfilled') return undefined;
    replies.push(s.value);
  }
  return replies;
}

/** The replies of a launched step, or its root cause (the watchdog names the towers that missed the deadline). */
export async function settleAll(towers: TowerSet, step: number, settled: Settled, deadlineMs: number): Promise<StepReply[]> {
  const replies = fulfilled(settled);
  if (replies) return replies;
  const failed = settled.flatMap((s) => (s.status === 'rejected' ? [s.reason as unknown] : []));
  const e = rootCause(failed);
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

/** One step on every tower, not pipelined. */
export async function stepAll(towers: TowerSet, step: number, requests: StepRequest[], deadlineMs: number, faults: FaultPlan | undefined): Promise<StepReply[]> {
  return settleAll(towers, step, await launchAll(towers, requests, deadlineMs, faultsFor(faults, step, towers.size)), deadlineMs);
}
