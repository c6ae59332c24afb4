// Run-token proofs (Note [Run token] in cpp/group/rendezvous.h): the token stays in this process; the store and the
// native side only ever see HMACs of it, one per rank.
import { createHmac } from 'node:crypto';

/** proofs[q] = HMAC-SHA256(token, "towerline-join|<runId>|q") in hex, for every rank q of the group. */
export function tokenProofs(token: string, runId: string, worldSize: number): string[] {
  return Array.from({ length: worldSize }, (_, q) => createHmac('sha256', token).update(`towerline-join|${runId}|${q}`).digest('hex'));
}
