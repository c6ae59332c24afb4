// Chooses and validates the reduction strategy: 'auto' picks by tower count and message size; users may plug their own.
import { z } from 'zod';
import { naive } from './naive.js';
import { ring } from './ring.js';
import { tree } from './tree.js';
import { validateSchedule, type ReductionStrategy, type Schedule, type ScheduleRequest } from './schedule.js';
import { validate } from '../util/validate.js';
import { acceptSchedule, checkChunkElems } from './accept.js';

const builtinSchema = z
  .object({
    algorithm: z.enum(['auto', 'ring', 'tree', 'naive']).default('auto'),
    /** Upper bound on the elements one tower moves per step (splits big messages into segments). */
    chunkElems: z.number().int().positive().optional(),
  })
  .strict();
const customSchema = z
  .object({
    custom: z.custom<ReductionStrategy>((v) => typeof v === 'object' && v !== null && typeof (v as ReductionStrategy).plan === 'function', 'expected { name, plan(req) }'),
  })
  .strict();
export const reductionSchema = z.union([builtinSchema, customSchema]);
export type ReductionOptions = z.input<typeof reductionSchema>;

/**
 * Below this many bytes the tree's fewer phases (2·log2 n vs 2(n−1)) should beat the ring's bandwidth. A
 * latency/bandwidth heuristic, not tuned: on the 2-core development machine, 4 CPU towers oversubscribe the cores
 * and the naive schedule (2 phases) was fastest at every size (docs/benchmarks.md).
 */
export const TREE_BELOW_BYTES = 64 * 1024;

export function autoStrategy(req: ScheduleRequest, chunkElems?: number): ReductionStrategy {
  if (req.ranks >= 4 && req.length * 4 < TREE_BELOW_BYTES) return tree(chunkElems);
  return ring(chunkElems);
}

/** Plans the schedule for `req` and validates it; a bad custom schedule is rejected with the reason. */
/** Validates reduction options (errors name the field); undefined means the default ('auto'). */
export function parseReduction(options: unknown): z.output<typeof reductionSchema> {
  const hint = "Use { algorithm: 'auto' | 'ring' | 'tree' | 'naive', chunkElems? } or { custom: { name, plan(req) } }.";
  const isCustom = typeof options === 'object' && options !== null && 'custom' in options;
  return isCustom ? validate(customSchema, options, 'reduction', hint) : validate(builtinSchema, options ?? {}, 'reduction', hint);
}

export function planReduction(options: ReductionOptions | undefined, req: ScheduleRequest): Schedule {
  const o = parseReduction(options);
  let strategy: ReductionStrategy;
  if ('custom' in o) strategy = o.custom;
  else if (o.algorithm === 'ring') strategy = ring(o.chunkElems);
  else if (o.algorithm === 'tree') strategy = tree(o.chunkElems);
  else if (o.algorithm === 'naive') strategy = naive();
  else strategy = autoStrategy(req, o.chunkElems);
  if (!('custom' in o) && strategy.name !== 'naive') checkChunkElems(o.chunkElems, req, strategy.name === 'ring' ? req.ranks : 1);
  let planned: unknown;
  try {
    planned = strategy.plan({ ...req });
  } catch (e) {
    throw new Error(`reduction strategy '${strategy.name}' failed to plan for ${req.ranks} towers and ${req.length} elements: ${(e as Error).message}`);
  }
  // A private frozen copy, taken before validation: what is validated is what runs, whatever the strategy does later.
  const s = acceptSchedule(planned, String(strategy.name));
  validateSchedule(s, req);
  return s;
}
