// Process group options: given explicitly, or read from the environment a launcher set (towerline's own variables,
// torchrun's, Open MPI's or Slurm's), validated with zod; every error names the option or the variable.
import { z } from 'zod';
import { ConfigError, validate } from '../util/validate.js';

const nonNegative = z.number().int('expected an integer').min(0, 'expected an integer >= 0');
const positive = z.number().int('expected an integer').min(1, 'expected an integer >= 1');
const ms = z.number().int('expected whole milliseconds').min(1, 'expected at least 1 ms').max(2 ** 30);

/** file:///absolute/dir (Gloo's FileStore: one machine or a shared filesystem) or redis://host:port (RedisStore). */
const rdzvUrl = z
  .string()
  .refine((s) => /^file:\/\/\/\S*$/.test(s) || /^redis:\/\/(\[[0-9a-fA-F:.]+\]|[^\s/:[\]]+)(:\d{1,5})?\/?$/.test(s), {
    message: 'expected file:///shared/dir or redis://host:port',
  });

export const GroupOptionsSchema = z
  .object({
    /** This process's global rank, in [0, worldSize). */
    rank: nonNegative,
    /** The number of processes in the run. */
    worldSize: positive,
    /** This process among those on its machine (informational; the launcher uses it to pick devices). */
    localRank: nonNegative.default(0),
    localWorldSize: positive.default(1),
    /** Keys every store entry: give each launch its own (two runs never mix). */
    runId: z.string().regex(/^[A-Za-z0-9._:@+-]{1,128}$/, 'expected 1 to 128 characters of A-Z a-z 0-9 . _ : @ + -'),
    /** Where the processes meet. */
    rdzv: rdzvUrl,
    /** The run's shared secret (Note [Run token]); required when the transport binds beyond loopback. */
    token: z.string().min(1, 'expected a non-empty token').optional(),
    /** Towers per process: one Gloo context per slot (Note [Process group contexts]); the same in every process. */
    slots: positive.max(4096).default(1),
    /** The address the TCP transport binds (loopback unless told otherwise). */
    address: z.string().min(1).default('127.0.0.1'),
    /** Bind this network interface's address instead of `address`. */
    iface: z.string().min(1).optional(),
    /** The name other ranks' errors use for this process's host (default: its hostname). */
    hostname: z.string().min(1).optional(),
    /** Deadline of every collective. */
    timeoutMs: ms.default(30_000),
    /** Deadline for every rank to join. */
    rendezvousTimeoutMs: ms.default(30_000),
  })
  .strict()
  .superRefine((o, ctx) => {
    if (o.rank >= o.worldSize) ctx.addIssue({ code: 'custom', path: ['rank'], message: `must be less than worldSize (${o.worldSize})` });
    if (o.localRank >= o.localWorldSize)
      ctx.addIssue({ code: 'custom', path: ['localRank'], message: `must be less than localWorldSize (${o.localWorldSize})` });
    if (!o.token && (o.iface !== undefined || !isLoopback(o.address)))
      ctx.addIssue({
        code: 'custom',
        path: ['token'],
        message: `binding ${o.iface ? `interface ${o.iface}` : o.address} (beyond loopback) needs a run token: set the same secret in TOWERLINE_TOKEN (or the token option) for every process`,
      });
  });

export type GroupOptionsInput = z.input<typeof GroupOptionsSchema>;
export type GroupOptions = z.output<typeof GroupOptionsSchema>;

export function isLoopback(address: string): boolean {
  return address === 'localhost' || address === '::1' || /^127\.\d+\.\d+\.\d+$/.test(address);
}

type Env = Record<string, string | undefined>;
type Field = keyof GroupOptionsInput;

/** Which variable each launcher sets for each option; the first launcher whose rank variable is set is used. */
const LAUNCHERS: Array<{ name: string; vars: Partial<Record<Field, string>>; runId?: (env: Env) => string | undefined }> = [
  {
    name: 'torchrun',
    vars: { rank: 'RANK', worldSize: 'WORLD_SIZE', localRank: 'LOCAL_RANK', localWorldSize: 'LOCAL_WORLD_SIZE' },
    runId: (env) => env.TORCHELASTIC_RUN_ID,
  },
  {
    name: 'Open MPI',
    vars: {
      rank: 'OMPI_COMM_WORLD_RANK',
      worldSize: 'OMPI_COMM_WORLD_SIZE',
      localRank: 'OMPI_COMM_WORLD_LOCAL_RANK',
      localWorldSize: 'OMPI_COMM_WORLD_LOCAL_SIZE',
    },
    runId: (env) => (env.OMPI_MCA_ess_base_jobid ? `ompi-${env.OMPI_MCA_ess_base_jobid}` : undefined),
  },
  {
    name: 'Slurm',
    vars: { rank: 'SLURM_PROCID', worldSize: 'SLURM_NTASKS', localRank: 'SLURM_LOCALID' },
    runId: (env) => (env.SLURM_JOB_ID ? `slurm-${env.SLURM_JOB_ID}.${env.SLURM_STEP_ID ?? '0'}` : undefined),
  },
];

/** towerline's own variables, which take precedence over a launcher's. */
const OWN: Record<Field, string> = {
  rank: 'TOWERLINE_RANK',
  worldSize: 'TOWERLINE_WORLD_SIZE',
  localRank: 'TOWERLINE_LOCAL_RANK',
  localWorldSize: 'TOWERLINE_LOCAL_WORLD_SIZE',
  runId: 'TOWERLINE_RUN_ID',
  rdzv: 'TOWERLINE_RDZV',
  token: 'TOWERLINE_TOKEN',
  slots: 'TOWERLINE_SLOTS',
  address: 'TOWERLINE_ADDR',
  iface: 'TOWERLINE_IFACE',
  hostname: 'TOWERLINE_HOSTNAME',
  timeoutMs: 'TOWERLINE_TIMEOUT_MS',
  rendezvousTimeoutMs: 'TOWERLINE_RDZV_TIMEOUT_MS',
};
const NUMERIC = new Set<Field>(['rank', 'worldSize', 'localRank', 'localWorldSize', 'slots', 'timeoutMs', 'rendezvousTimeoutMs']);

/** The options the environment gives, and the variable each came from (for error messages). */
export function groupOptionsFromEnv(env: Env = process.env): { options: Partial<GroupOptionsInput>; sources: Partial<Record<Field, string>> } {
  const options: Record<string, unknown> = {};
  const sources: Partial<Record<Field, string>> = {};
  const take = (field: Field, variable: string) => {
    const raw = env[variable];
    if (raw === undefined || raw === '' || field in options) return;
    if (NUMERIC.has(field)) {
      if (!/^\d+$/.test(raw.trim())) throw new ConfigError(`${variable} must be a non-negative integer, got ${JSON.stringify(raw)}`, variable);
      options[field] = Number(raw.trim());
    } else {
      options[field] = raw;
    }
    sources[field] = variable;
  };
  for (const [field, variable] of Object.entries(OWN) as Array<[Field, string]>) take(field, variable);
  const launcher = LAUNCHERS.find((l) => env[l.vars.rank!] !== undefined);
  if (launcher) {
    for (const [field, variable] of Object.entries(launcher.vars) as Array<[Field, string]>) take(field, variable);
    if (launcher.name === 'Slurm' && !('localWorldSize' in options) && env.SLURM_TASKS_PER_NODE !== undefined) {
      options.localWorldSize = slurmTasksOnNode(env.SLURM_TASKS_PER_NODE, Number(env.SLURM_NODEID ?? '0'));
      sources.localWorldSize = 'SLURM_TASKS_PER_NODE';
    }
    const runId = launcher.runId?.(env);
    if (runId !== undefined && !('runId' in options)) {
      options.runId = runId;
      sources.runId = `${launcher.name}'s job id`;
    }
  }
  if (!('rdzv' in options) && env.MASTER_ADDR !== undefined && 'rank' in options)
    throw new ConfigError(
      `TOWERLINE_RDZV is not set. torchrun's MASTER_ADDR:MASTER_PORT (${env.MASTER_ADDR}:${env.MASTER_PORT ?? '?'}) is a PyTorch ` +
        'TCPStore, which towerline cannot use: set TOWERLINE_RDZV=redis://host:port or file:///shared/dir on every process',
      'TOWERLINE_RDZV',
    );
  return { options: options as Partial<GroupOptionsInput>, sources };
}

/** Whether the environment asks for a process group: towerline launch, or a launcher's ranks given TOWERLINE_RDZV. */
export function groupRequested(env: Env = process.env): boolean {
  return env.TOWERLINE_RDZV !== undefined || Number(env.TOWERLINE_WORLD_SIZE ?? '1') > 1;
}

/** Slurm's SLURM_TASKS_PER_NODE ("2(x3),1": 2 tasks on each of the first 3 nodes, 1 on the 4th) for node `node`. */
export function slurmTasksOnNode(spec: string, node: number): number {
  let first = 0;
  for (const part of spec.split(',')) {
    const m = /^(\d+)(?:\(x(\d+)\))?$/.exec(part.trim());
    if (!m) throw new ConfigError(`SLURM_TASKS_PER_NODE must look like "2(x3),1", got ${JSON.stringify(spec)}`, 'SLURM_TASKS_PER_NODE');
    const count = Number(m[2] ?? '1');
    if (node < first + count) return Number(m[1]);
    first += count;
  }
  throw new ConfigError(`SLURM_TASKS_PER_NODE (${JSON.stringify(spec)}) lists ${first} nodes; SLURM_NODEID is ${node}`, 'SLURM_TASKS_PER_NODE');
}

/**
 * The group options: `explicit` fields win over the environment's. Throws a ConfigError naming the option (and the
 * variable it came from) for anything missing or invalid.
 */
export function resolveGroupOptions(explicit: Partial<GroupOptionsInput> = {}, env: Env = process.env): GroupOptions {
  const fromEnv = groupOptionsFromEnv(env);
  const merged: Record<string, unknown> = { ...fromEnv.options };
  for (const [k, v] of Object.entries(explicit)) if (v !== undefined) merged[k] = v;
  const needed: Array<[Field, string]> = [
    ['rank', 'TOWERLINE_RANK (or RANK, OMPI_COMM_WORLD_RANK, SLURM_PROCID)'],
    ['worldSize', 'TOWERLINE_WORLD_SIZE (or WORLD_SIZE, OMPI_COMM_WORLD_SIZE, SLURM_NTASKS)'],
    ['runId', 'TOWERLINE_RUN_ID'],
    ['rdzv', 'TOWERLINE_RDZV'],
  ];
  for (const [field, variables] of needed)
    if (merged[field] === undefined)
      throw new ConfigError(`process group: no ${field}; give the ${field} option or set ${variables}`, `group.${field}`);
  try {
    return validate(GroupOptionsSchema, merged, 'group');
  } catch (e) {
    if (!(e instanceof ConfigError) || !e.field) throw e;
    const field = e.field.replace(/^group\./, '').split(/[.[]/)[0] as Field;
    const variable = field in explicit ? undefined : fromEnv.sources[field];
    throw variable ? new ConfigError(`${e.message}\n  (group.${field} came from ${variable})`, variable) : e;
  }
}
