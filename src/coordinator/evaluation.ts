// Evaluation on the test set at the end of each epoch: on tower 0 (every replica is the same), with the EMA
// weights when the run keeps them.
import type { TowerSet } from './towers.js';

export interface Evaluation {
  loss: number;
  accuracy: number;
  useEma: boolean;
}

export const TEST_SET = 'test';

export async function evaluateTest(towers: TowerSet, useEma: boolean): Promise<Evaluation> {
  const r = await towers.ports[0]!.evaluate(TEST_SET, useEma);
  return { loss: r.lossSum / r.count, accuracy: r.correct / r.count, useEma };
}
