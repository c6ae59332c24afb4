// The asynchronous mode's command-line flags (src/cli.ts: --mode, --max-staleness, --staleness-lr) as train options.
import { ConfigError } from '../errors.js';
import { ROLE_ENV } from './remote.js';

export interface AsyncFlags {
  mode?: string;
  maxStaleness?: string;
  stalenessLr?: boolean;
}

/** The train options the flags give; the train schema checks them with the rest (src/options.ts). */
export function asyncFlags(f: AsyncFlags): { mode?: 'sync' | 'async'; maxStaleness?: number | 'unbounded'; stalenessLr?: boolean } {
  if (f.mode !== undefined && f.mode !== 'sync' && f.mode !== 'async') throw new ConfigError(`--mode: expected 'sync' or 'async'; given '${f.mode}'`, 'mode');
  let maxStaleness: number | 'unbounded' | undefined;
  if (f.maxStaleness !== undefined) {
    maxStaleness = f.maxStaleness === 'unbounded' ? 'unbounded' : Number(f.maxStaleness);
    if (maxStaleness !== 'unbounded' && !(Number.isInteger(maxStaleness) && maxStaleness >= 0))
      throw new ConfigError(`--max-staleness: expected a whole number >= 0 or 'unbounded'; given '${f.maxStaleness}'`, 'maxStaleness');
  }
  return {
    ...(f.mode !== undefined ? { mode: f.mode } : {}),
    ...(maxStaleness !== undefined ? { maxStaleness } : {}),
    ...(f.stalenessLr ? { stalenessLr: true } : {}),
  };
}

/** A server or worker of an async run across processes joins its process group itself (src/async/remote.ts). */
export function asyncAcrossProcesses(f: AsyncFlags, env: Record<string, string | undefined> = process.env): boolean {
  return f.mode === 'async' && env[ROLE_ENV] !== undefined;
}
