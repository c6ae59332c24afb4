// The replica consistency check and its policy: every tower hashes its weights on its device (Note [Replica hash]);
// towers whose hash differs from tower 0's are named with their first differing tensor.
import { ReplicaMismatchError } from '../errors.js';
import type { TowerSet } from './towers.js';
import { rootState } from '../group/shared-checkpoint.js';

export interface ReplicaReport {
  consistent: boolean;
  /** The towers whose weights differ from tower 0's. */
  differing: string[];
  detail: string;
}

/** Whether the replica check runs after `step` (every `every` steps; 0: never). */
export function replicaCheckDue(step: number, every: number): boolean {
  return every > 0 && step % every === 0;
}

/** The check of a run with one tower in all: the same report, without hashing (Note [Pipelined steps]: it drains nothing). */
const ONE_TOWER: ReplicaReport = Object.freeze({ consistent: true, differing: Object.freeze([]) as unknown as string[], detail: 'one tower in all: no replicas to compare' });

export async function checkReplicas(towers: TowerSet): Promise<ReplicaReport> {
  const hashes = await towers.all((p) => p.replicaHashes());
  const ref = hashes[0]!;
  const bad: string[] = [];
  const differing: string[] = [];
  hashes.forEach((h, r) => {
    if (r === 0 || h.total === ref.total) return;
    const tensor = h.tensors.find(([name, v], i) => ref.tensors[i]?.[0] === name && ref.tensors[i]?.[1] !== v)?.[0];
    differing.push(towers.devices[r]!);
    bad.push(`tower on ${towers.devices[r]} differs from tower 0 (${towers.devices[0]}) in '${tensor ?? '?'}'`);
  });
  const local = bad.length === 0 ? { consistent: true, differing, detail: `all ${hashes.length} towers hash to ${ref.total}` } : { consistent: false, differing, detail: bad.join('; ') };
  return towers.world.compareReplicas(local, ref.total, ref.tensors); // and across processes (Note [Process dimension])
}

/**
 * Every `every` steps: check, report, and on a mismatch halt (ReplicaMismatchError) or copy tower 0's whole
 * training state to every tower and go on ('rebroadcast'). The whole state, not only the weights: a replica that
 * diverged also has diverged optimizer slots and EMA (momentum, Adam), which would pull it apart again. A rare
 * repair off the hot path, so the copy goes through the host; tower 0 is rewritten too, so every tower holds the
 * very same values (a float64 reference tower rounds what it reads).
 */
export async function replicaPolicy(towers: TowerSet, step: number, o: { every: number; policy: 'halt' | 'rebroadcast' }, report: (r: ReplicaReport) => void): Promise<void> {
  if (!replicaCheckDue(step, o.every)) return;
  if (towers.world.towers === 1) return report(ONE_TOWER); // nothing to compare: no hashing, no drained pipeline
  const r = await checkReplicas(towers);
  report(r);
  if (r.consistent) return;
  if (o.policy === 'halt') throw new ReplicaMismatchError(`replicas diverged by step ${step}: ${r.detail}`, step, r.differing);
  const tensors = await rootState(towers.world, () => towers.readState()); // rank 0's tower 0, on every rank
  await towers.all((p) => p.writeState(tensors));
}
