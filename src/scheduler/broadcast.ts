// Broadcast from tower 0 along a binomial tree (start-up weights): copies only, so every replica is bit-identical.
import { COPY, type CollStep, type Schedule } from './schedule.js';

export function broadcastSchedule(ranks: number, length: number): Schedule {
  const phases: CollStep[][][] = [];
  let have = 1;
  while (have < ranks) {
    const phase: CollStep[][] = Array.from({ length: ranks }, () => []);
    for (let src = 0; src < have && src + have < ranks; src++) phase[src + have]!.push([COPY, src, 0, length]);
    phases.push(phase);
    have *= 2;
  }
  return { name: 'broadcast', phases, collective: 'broadcast' };
}
