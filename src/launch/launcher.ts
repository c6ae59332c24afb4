// `towerline launch`: starts the ranks of this node of a multi-process run, in the spirit of torchrun and horovodrun.
// Each child gets its rank in towerline's variables (the same ones a child of mpirun or srun finds in theirs, read
// by src/group/options.ts); its output is prefixed with its rank. When a child fails, the others get a grace period to
// fail on their own (the process group names the dead rank to them at once), then are stopped; the launcher exits
// non-zero naming the rank, or restarts the whole node from the last checkpoint (--max-restarts).
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { isLoopback } from '../group/options.js';
import { ROLE_ENV, SERVERS_ENV } from '../async/roles.js';
import { validate } from '../util/validate.js';

// Note [Launcher]: a launch is attempts of the whole node. Attempt k starts every local rank r (global rank
// nodeRank·nprocPerNode + r) with the run id '<run id>' (k = 0) or '<run id>.k', so every restart meets in fresh
// store keys (a store never overwrites a key) and never mixes with a dead attempt's records; every node's launcher
// counts the same failures (one failure fails the whole group), so all nodes agree on k. An attempt ends when every
// child has exited: all with 0 is success; else the first child to fail is the cause. After that first failure the
// other children get `graceMs` to exit on their own (they fail at once, naming the dead rank, through the process
// group), then SIGTERM, then SIGKILL 5 s later: no child outlives its launcher. Children resume from the last
// checkpoint by themselves (the training command gives --checkpoint-dir and --resume-if-present). SIGINT and SIGTERM are passed
// on to every child (the CLI stops after its current step and checkpoints, every rank after the same step) and
// never restart. With --servers N (mode 'async' across processes) ranks 0..N-1 are told they are parameter servers
// and the rest workers (TOWERLINE_ASYNC_ROLE, TOWERLINE_ASYNC_SERVERS; src/async/remote.ts).

const nonNegative = z.number().int('expected an integer').min(0, 'expected an integer >= 0');
const positive = z.number().int('expected an integer').min(1, 'expected an integer >= 1');

export const launchOptionsSchema = z
  .object({
    nprocPerNode: positive.default(1),
    nnodes: positive.default(1),
    nodeRank: nonNegative.default(0),
    /** file:///dir or redis://host:port; one machine: a fresh temporary directory when not given. */
    rdzv: z.string().optional(),
    /** The run's id (every node of a run gives the same); default: a random one (one machine only). */
    runId: z.string().regex(/^[A-Za-z0-9._:@+-]{1,100}$/, 'expected 1 to 100 characters of A-Z a-z 0-9 . _ : @ + -').optional(),
    maxRestarts: nonNegative.default(0),
    /** The address the ranks' transport binds (loopback unless told), or a network interface. */
    addr: z.string().min(1).optional(),
    iface: z.string().min(1).optional(),
    /** How long the other ranks get to fail on their own after one fails, before they are stopped (ms). */
    graceMs: positive.default(10_000),
    /** Mode 'async' across processes: the first `servers` ranks are parameter servers, the rest workers (Note [Parameter shards]). */
    servers: positive.optional(),
    /** The training command and its arguments. */
    command: z.array(z.string()).min(1, 'give the training command after the options, e.g. -- towerline train --devices cpu*2'),
  })
  .strict()
  .superRefine((o, ctx) => {
    if (o.nodeRank >= o.nnodes) ctx.addIssue({ code: 'custom', path: ['nodeRank'], message: `must be less than nnodes (${o.nnodes})` });
    if (o.nnodes > 1 && o.rdzv === undefined)
      ctx.addIssue({ code: 'custom', path: ['rdzv'], message: 'several nodes meet in a shared store: give --rdzv file:///shared/dir or redis://host:port' });
    if (o.nnodes > 1 && o.runId === undefined) ctx.addIssue({ code: 'custom', path: ['runId'], message: 'several nodes must give the same --run-id' });
    if (o.servers !== undefined && o.servers >= o.nnodes * o.nprocPerNode)
      ctx.addIssue({ code: 'custom', path: ['servers'], message: `must leave at least one worker: ${o.servers} server(s) in ${o.nnodes * o.nprocPerNode} rank(s)` });
  });
export type LaunchOptions = z.input<typeof launchOptionsSchema>;

export interface LaunchResult {
  /** 0 when every rank of the last attempt exited with 0. */
  exitCode: number;
  attempts: number;
  /** Why the last attempt failed (the first rank that failed), when it did. */
  failure?: string;
}

export interface LaunchIo {
  /** Where the children's prefixed output and the launcher's own lines go. */
  out(line: string): void;
  err(line: string): void;
  env: Record<string, string | undefined>;
}

interface Child {
  rank: number;
  proc: ChildProcess;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Forwards a stream line by line with a prefix. */
function pipeLines(stream: NodeJS.ReadableStream | null, prefix: string, write: (line: string) => void): void {
  if (!stream) return;
  let partial = '';
  stream.on('data', (d: Buffer) => {
    partial += d.toString();
    const lines = partial.split('\n');
    partial = lines.pop()!;
    for (const l of lines) write(prefix + l);
  });
  stream.on('end', () => partial && write(prefix + partial));
}

function how(r: { code: number | null; signal: NodeJS.Signals | null }): string {
  return r.signal ? `was killed by ${r.signal}` : `exited with code ${r.code}`;
}

/** Starts this node's ranks and waits for them; restarts the node up to maxRestarts times after a failure. */
export async function launch(given: LaunchOptions, io: LaunchIo): Promise<LaunchResult> {
  const o = validate(launchOptionsSchema, given, 'launch', 'Example: towerline launch --nproc-per-node 2 -- towerline train --devices cpu*2 --epochs 1');
  const runId = o.runId ?? `launch-${randomBytes(4).toString('hex')}`;
  const ownStore = o.rdzv === undefined ? mkdtempSync(join(tmpdir(), 'towerline-rdzv-')) : undefined;
  const rdzv = o.rdzv ?? `file://${ownStore}`;
  const beyondLoopback = o.iface !== undefined || (o.addr !== undefined && !isLoopback(o.addr));
  // One machine on loopback: a fresh token keeps every other process out. Several machines share the user's.
  const token = io.env.TOWERLINE_TOKEN ?? (o.nnodes === 1 && !beyondLoopback ? randomBytes(16).toString('hex') : undefined);
  if (token === undefined && beyondLoopback)
    throw new Error('towerline launch: ranks binding beyond loopback need a run token: set the same secret in TOWERLINE_TOKEN on every node');
  const world = o.nnodes * o.nprocPerNode;
  let stopSignal: NodeJS.Signals | undefined;
  let children: Child[] = [];
  const forward = (s: NodeJS.Signals) => () => {
    stopSignal ??= s;
    io.err(`towerline launch: ${s}: passing it on to every rank (no restart)`);
    for (const c of children) if (c.proc.exitCode === null && c.proc.signalCode === null) c.proc.kill(s);
  };
  const onInt = forward('SIGINT');
  const onTerm = forward('SIGTERM');
  process.on('SIGINT', onInt);
  process.on('SIGTERM', onTerm);
  try {
    for (let attempt = 0; ; attempt++) {
      const id = attempt === 0 ? runId : `${runId}.${attempt}`;
      children = startNode(o, { id, rdzv, token, world, attempt }, io);
      const failure = await waitNode(children, o.graceMs, io);
      if (!failure) return { exitCode: 0, attempts: attempt + 1 };
      if (stopSignal) return { exitCode: stopSignal === 'SIGINT' ? 130 : 143, attempts: attempt + 1, failure };
      if (attempt >= o.maxRestarts) {
        io.err(`towerline launch: ${failure}; the run failed${o.maxRestarts > 0 ? ` after ${attempt} restart(s)` : ''}`);
        return { exitCode: 1, attempts: attempt + 1, failure };
      }
      io.err(`towerline launch: ${failure}; restarting every rank of node ${o.nodeRank} (restart ${attempt + 1} of ${o.maxRestarts}, run id ${runId}.${attempt + 1})`);
    }
  } finally {
    process.off('SIGINT', onInt);
    process.off('SIGTERM', onTerm);
    if (ownStore) rmSync(ownStore, { recursive: true, force: true });
  }
}

function startNode(
  o: z.output<typeof launchOptionsSchema>,
  a: { id: string; rdzv: string; token: string | undefined; world: number; attempt: number },
  io: LaunchIo,
): Child[] {
  const host = io.env.TOWERLINE_HOSTNAME ?? hostname();
  return Array.from({ length: o.nprocPerNode }, (_, local) => {
    const rank = o.nodeRank * o.nprocPerNode + local;
    const env: Record<string, string | undefined> = {
      ...io.env,
      TOWERLINE_RANK: String(rank),
      TOWERLINE_WORLD_SIZE: String(a.world),
      TOWERLINE_LOCAL_RANK: String(local),
      TOWERLINE_LOCAL_WORLD_SIZE: String(o.nprocPerNode),
      TOWERLINE_NODE_RANK: String(o.nodeRank),
      TOWERLINE_RUN_ID: a.id,
      TOWERLINE_RDZV: a.rdzv,
      TOWERLINE_RESTART: String(a.attempt),
      TOWERLINE_HOSTNAME: host,
      ...(a.token !== undefined ? { TOWERLINE_TOKEN: a.token } : {}),
      ...(o.servers !== undefined ? { [ROLE_ENV]: rank < o.servers ? 'server' : 'worker', [SERVERS_ENV]: String(o.servers) } : {}),
      ...(o.iface !== undefined ? { TOWERLINE_IFACE: o.iface } : { TOWERLINE_ADDR: o.addr ?? io.env.TOWERLINE_ADDR ?? '127.0.0.1' }),
    };
    const [cmd, ...args] = o.command;
    const proc = spawn(cmd!, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
      proc.once('error', (e) => {
        io.err(`towerline launch: cannot start rank ${rank} (${o.command.join(' ')}): ${e.message}`);
        resolve({ code: 127, signal: null });
      });
      proc.once('exit', (code, signal) => resolve({ code, signal }));
    });
    pipeLines(proc.stdout, `[rank ${rank}] `, io.out);
    pipeLines(proc.stderr, `[rank ${rank}] `, io.err);
    io.err(`towerline launch: rank ${rank} of ${a.world} (local rank ${local}, run id ${a.id}) started, pid ${proc.pid ?? '?'}`);
    return { rank, proc, exit };
  });
}

/** Waits for every child; returns the first failure ("rank 2 (pid 123) was killed by SIGKILL"), or undefined. */
async function waitNode(children: Child[], graceMs: number, io: LaunchIo): Promise<string | undefined> {
  let failure: string | undefined;
  const timers: NodeJS.Timeout[] = [];
  const alive = () => children.filter((c) => c.proc.exitCode === null && c.proc.signalCode === null);
  const stopOthers = () => {
    timers.push(
      setTimeout(() => {
        const left = alive();
        if (left.length === 0) return;
        io.err(`towerline launch: stopping rank(s) ${left.map((c) => c.rank).join(', ')} (SIGTERM), ${graceMs} ms after the failure`);
        for (const c of left) c.proc.kill('SIGTERM');
        timers.push(setTimeout(() => alive().forEach((c) => c.proc.kill('SIGKILL')), 5000));
      }, graceMs),
    );
  };
  await Promise.all(
    children.map(async (c) => {
      const r = await c.exit;
      if (r.code === 0) return;
      if (failure === undefined) {
        failure = `rank ${c.rank} (pid ${c.proc.pid ?? '?'}) ${how(r)}`;
        io.err(`towerline launch: ${failure}; the other ranks get ${graceMs} ms to stop on their own`);
        stopOthers();
      }
    }),
  );
  timers.forEach(clearTimeout);
  return failure;
}
