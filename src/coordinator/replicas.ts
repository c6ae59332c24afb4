// The replica consistency check and its policy: every tower hashes its weights on its device (Note [Replica hash]);
// towers whose hash differs from tower 0's are named with their first differing tensor.
import { ReplicaMismatchError } from '../errors.js';
import type { TowerSet } from './towers.js';

export interface ReplicaReport {
  consistent: boolean;
  detail: string;
}

export async function checkReplicas(towers: TowerSet): Promise<ReplicaReport> {
  const hashes = await towers.all((p) => p.replicaHashes());
  const ref = hashes[0]!;
  const bad: string[] = [];
  hashes.forEach((h, r) => {
    if (r === 0 || h.total === ref.total) return;
    const tensor = h.tensors.find(([name, v], i) => ref.tensors[i]?.[0] === name && ref.tensors[i]?.[1] !== v)?.[0];
    bad.push(`tower on ${towers.devices[r]} differs from tower 0 (${towers.devices[0]}) in '${tensor ?? '?'}'`);
  });
  return bad.length === 0 ? { consistent: true, detail: `all ${hashes.length} towers hash to ${ref.total}` } : { consistent: false, detail: bad.join('; ') };
}

/**
 * Every `every` steps: check, report, and on a mismatch halt (ReplicaMismatchError) or copy tower 0's weights to
 * every tower and go on ('rebroadcast').
 */
export async function replicaPolicy(towers: TowerSet, step: number, o: { every: number; policy: 'halt' | 'rebroadcast' }, report: (r: ReplicaReport) => void): Promise<void> {
  if (o.every <= 0 || step % o.every !== 0) return;
  const r = await checkReplicas(towers);
  report(r);
  if (r.consistent) return;
  if (o.policy === 'halt') throw new ReplicaMismatchError(`replicas diverged by step ${step}: ${r.detail}`);
  await towers.broadcastWeights();
}
