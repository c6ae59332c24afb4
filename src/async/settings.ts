// The asynchronous mode's settings, resolved and checked once before any tower starts (docs/async.md).
import { ConfigError } from '../errors.js';
import type { ResolvedTrainOptions } from '../options.js';

/**
 * The default staleness bound: a tower may run 4 iterations ahead of the slowest. Small enough that a gradient never
 * lands on weights more than a few rounds newer than the ones it was computed on (async MNIST reaches the
 * synchronous accuracy with it), large enough that a tower that is briefly slow does not hold up the others.
 */
export const DEFAULT_MAX_STALENESS = 4;

export interface AsyncSettings {
  /** Iterations a tower may run ahead of the slowest live tower (Infinity: unbounded). */
  maxStaleness: number;
  /** Divide each update's learning rate by 1 + its lag. */
  stalenessLr: boolean;
  /** The run fails when fewer towers remain. */
  minTowers: number;
}

/** The settings of an async run; throws a ConfigError naming the option for what the mode cannot do. */
export function asyncSettings(o: ResolvedTrainOptions, towers: number): AsyncSettings {
  const s = o.maxStaleness;
  const settings = { maxStaleness: s === undefined ? DEFAULT_MAX_STALENESS : s === 'unbounded' ? Infinity : s, stalenessLr: o.stalenessLr ?? false, minTowers: o.minTowers ?? 1 };
  if (o.guard.nonFinite === 'rollback')
    throw new ConfigError("guard.nonFinite: 'rollback' is not available in mode 'async' (the towers do not stop together to roll back); use 'halt' or 'skip'", 'guard.nonFinite');
  if (settings.minTowers > towers)
    throw new ConfigError(`minTowers: ${settings.minTowers} is more than the ${towers} tower(s) of this run; give at most ${towers}`, 'minTowers');
  return settings;
}

/** The async-only options given to a synchronous run, which would silently do nothing. */
export function checkSyncOptions(o: ResolvedTrainOptions): void {
  for (const k of ['maxStaleness', 'stalenessLr', 'minTowers'] as const)
    if (o[k] !== undefined) throw new ConfigError(`${k} applies to mode 'async'; this run is synchronous (set mode: 'async' or leave ${k} out)`, k);
}

/** maxStaleness as JSON can hold it (checkpoints, events): Infinity is 'unbounded'. */
export function stalenessLabel(maxStaleness: number): number | 'unbounded' {
  return Number.isFinite(maxStaleness) ? maxStaleness : 'unbounded';
}
