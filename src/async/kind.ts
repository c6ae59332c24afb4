// Which kind of run train() starts: synchronous (undefined), or mode 'async' on the towers of this process, or as
// a server or worker of a run across processes (TOWERLINE_ASYNC_ROLE; src/async/remote.ts). Options are checked here,
// before anything starts.
import { ConfigError } from '../errors.js';
import type { ResolvedTrainOptions } from '../options.js';
import type { RunKind } from '../coordinator/run.js';
import { localAsyncRun } from './run.js';
import { remoteAsyncRun, ROLE_ENV } from './remote.js';
import { asyncSettings, checkSyncOptions } from './settings.js';

export function asyncRunKind(o: ResolvedTrainOptions, towers: number, processes = 1, env: Record<string, string | undefined> = process.env): RunKind | undefined {
  if (o.mode !== 'async') {
    checkSyncOptions(o);
    return undefined;
  }
  asyncSettings(o, towers);
  if (processes > 1)
    throw new ConfigError(
      `mode: 'async' on a runtime in a process group of ${processes} processes: the synchronous group does not carry the parameter server; ` +
        `create the runtime without 'group' and start each process with ${ROLE_ENV}=server (ranks 0..S-1, S = TOWERLINE_ASYNC_SERVERS) or worker, or use towerline launch --servers S (docs/async.md)`,
      'mode',
    );
  const role = env[ROLE_ENV];
  return role ? remoteAsyncRun(role, env) : localAsyncRun();
}
