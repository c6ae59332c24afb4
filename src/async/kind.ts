// Which kind of run train() starts: synchronous (undefined), or mode 'async' on the towers of this process, or as
// a server or worker of a run across processes (TOWERLINE_ROLE; src/async/roles.ts). Options are checked here,
// before anything starts.
import type { ResolvedTrainOptions } from '../options.js';
import type { RunKind } from '../coordinator/run.js';
import { localAsyncRun } from './run.js';
import { asyncSettings, checkSyncOptions } from './settings.js';

export function asyncRunKind(o: ResolvedTrainOptions, towers: number): RunKind | undefined {
  if (o.mode !== 'async') {
    checkSyncOptions(o);
    return undefined;
  }
  asyncSettings(o, towers);
  return localAsyncRun();
}
