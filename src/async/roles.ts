// The variables that make a process a parameter server or a worker of an async run across processes
// (src/async/remote.ts); `towerline launch --servers N` sets them (src/launch/launcher.ts).

/** 'server' (ranks 0..servers-1) or 'worker': set by whoever starts the processes, with the group's TOWERLINE_* variables. */
export const ROLE_ENV = 'TOWERLINE_ASYNC_ROLE';
/** How many of the first ranks are parameter servers (default 1). */
export const SERVERS_ENV = 'TOWERLINE_ASYNC_SERVERS';

/** The server count the variables give; throws naming the variable when it is not a whole number >= 1. */
export function serversOf(env: Record<string, string | undefined>): number {
  const v = env[SERVERS_ENV];
  if (v === undefined || v === '') return 1;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${SERVERS_ENV}=${v}: expected a whole number of parameter servers >= 1`);
  return n;
}
