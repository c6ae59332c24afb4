// The non-finite policy (Note [Non-finite guard] in src/model/tower.ts): a step whose loss or reduced gradient is
// not finite was skipped by every tower alike; the run then halts naming the step, tower and tensor, skips on, or
// rolls back to the last checkpoint with a lower learning rate.
import { NonFiniteError } from '../errors.js';
import type { StepReply } from '../tower-port/protocol.js';
import type { TowerSet } from './towers.js';

/** True when the guard skipped the update, or a shard's loss is not finite. */
export function nonFinite(replies: StepReply[]): boolean {
  let lossSum = 0;
  for (const r of replies) lossSum += r.loss;
  return replies[0]!.skipped || !Number.isFinite(lossSum);
}

/** Names the towers with a non-finite local gradient (and its first tensor) or loss. */
export async function describeNonFinite(towers: TowerSet, step: number, replies: StepReply[]): Promise<string> {
  const tensors = await towers.all((p) => p.firstNonFinite());
  const bad: string[] = [];
  replies.forEach((reply, r) => {
    const lossBad = !Number.isFinite(reply.loss);
    if (tensors[r] !== undefined || lossBad)
      bad.push(`tower on ${towers.devices[r]}${tensors[r] ? `: gradient of '${tensors[r]}'` : ''}${lossBad ? ` (loss ${reply.loss})` : ''}`);
  });
  const where = bad.length > 0 ? bad.join('; ') : 'no tower had a non-finite local gradient: the all-reduce produced it (corrupted transfer?)';
  return `non-finite value at step ${step}: ${where}`;
}

export type NonFiniteAction = { kind: 'skip'; reason: string } | { kind: 'rollback'; reason: string };

/** What the policy says to do about a non-finite step; 'halt' (and 'rollback' with nothing to roll back to) throw. */
export function nonFiniteAction(policy: 'halt' | 'skip' | 'rollback', step: number, reason: string, canRollBack: boolean): NonFiniteAction {
  if (policy === 'halt') throw new NonFiniteError(reason, step);
  if (policy === 'skip') return { kind: 'skip', reason };
  if (!canRollBack) throw new NonFiniteError(`${reason}; no checkpoint to roll back to (set checkpoint.dir and everySteps)`, step);
  return { kind: 'rollback', reason };
}

/** Rollbacks in a row to one checkpoint. */
export interface Rollbacks {
  path: string;
  count: number;
}

/**
 * Counts a rollback to `path`; past `max` in a row to the same checkpoint the run halts: a non-finite value that comes
 * back at every lower learning rate comes from the data or the model, and rolling back forever would never end.
 */
export function countRollback(prev: Rollbacks, path: string, max: number, at: { reason: string; step: number; lrScale: number }): Rollbacks {
  const count = prev.path === path ? prev.count + 1 : 1;
  if (count > max)
    throw new NonFiniteError(
      `${at.reason}; rolled back to ${path} ${max} time(s) in a row and the non-finite value came back each time ` +
        `(learning-rate scale now ${at.lrScale}): it comes from the data or the model, not the step size; fix the input, or raise guard.maxRollbacks`,
      at.step,
    );
  return { path, count };
}
