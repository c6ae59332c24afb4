// The runtime's and train()'s options: the named types users see, and ONE schema each, parsed once, shared by the
// API, the CLI and checkpoints (the run settings a trajectory depends on are a part of the train schema).
import { z } from 'zod';
import { validate } from './util/validate.js';
import { modelSchema } from './model/spec.js';
import { optimizerSchema } from './model/optimizer.js';
import { parseReduction, type reductionSchema } from './scheduler/select.js';
import type { ReductionStrategy } from './scheduler/schedule.js';
import type { ModelSpec, OptimizerSpec } from './spec-types.js';
import type { DataInput } from './data/inputs.js';
import { DEFAULT_MAX_TOWERS } from './devices.js';
import type { GroupOptionsInput } from './group/options.js';
import type { LayoutOptions } from './tower-port/layout.js';

/** The all-reduce: a built-in algorithm ('auto' picks by tower count and size), or your own strategy. */
export type ReductionOptions = { algorithm?: 'auto' | 'ring' | 'tree' | 'naive'; chunkElems?: number } | { custom: ReductionStrategy };

export interface RuntimeOptions {
  /** Devices, one tower each (Note [Device grammar]): 'cpu:0', 'cpu*3' or 'cpu:0-2', 'cuda:1', 'cuda:all', 'cuda:0x4'. */
  devices: string | string[];
  reduction?: ReductionOptions;
  /** Deadline of one control call to a tower (ms; default 60000). */
  callTimeoutMs?: number;
  /** Deadline of one wait inside a collective (ms; default 30000). */
  collectiveTimeoutMs?: number;
  /**
   * How a global batch is shared: 'equal' (default; bit-reproducible) or 'speed': in proportion to each tower's
   * measured examples/sec (heterogeneous devices). Both are exact: each shard is weighted by 1/global batch.
   */
  shares?: 'equal' | 'speed';
  /**
   * GEMM threads per tower (default: the host's cores shared by the CPU towers). Results are the same bits at any
   * count (Note [GEMM threads] in cpp/cpu/gemm.cc); the run settings record it in their layout.
   */
  gemmThreads?: number;
  /** The most towers one runtime starts (default 64): each is a worker thread with its own model and data. */
  maxTowers?: number;
  /**
   * Train with the towers of other processes too (Note [Process dimension] in src/group/world.ts): `true` takes the
   * process group's settings from the environment a launcher set (`towerline launch`, torchrun, mpirun, srun), or
   * give them here (explicit fields win). The towers of this process are its slots; every process runs as many.
   */
  group?: boolean | GroupSettings;
  /** How CPU towers share the cores (Note [CPU layout] in src/tower-port/layout.ts); towers beyond the cores: 'threads' or 'fold'. */
  layout?: LayoutOptions;
}

/** A process group's settings (src/group/options.ts); `slots` defaults to this process's device count. */
export type GroupSettings = Partial<GroupOptionsInput>;

/** What to do when the guards fire (Note [Non-finite guard] in src/model/tower.ts). */
export interface GuardOptions {
  /**
   * A NaN or infinite loss or reduced gradient: 'halt' (default) errors naming step, tower and tensor; 'skip'
   * drops the update; 'rollback' restores the last checkpoint and goes on with the learning rate times
   * rollbackLrFactor (default 0.5).
   */
  nonFinite?: 'halt' | 'skip' | 'rollback';
  rollbackLrFactor?: number;
  /**
   * 'rollback': how many times in a row the run may roll back to one checkpoint before it halts (default 3): a
   * non-finite value that comes back at every lower learning rate is in the data or the model, and retrying forever
   * would never end the run.
   */
  maxRollbacks?: number;
  /** Watchdog: a step that has not finished within this many ms errors naming the tower and its phase. */
  stepTimeoutMs?: number;
  /** Compare a 64-bit hash of every tower's weights every K steps (default 100; 0 = never). */
  replicaCheckEvery?: number;
  /** On a replica mismatch: 'halt' (default) or 'rebroadcast' tower 0's weights to all and go on. */
  replicaPolicy?: 'halt' | 'rebroadcast';
}

/**
 * Checkpoints every `everySteps` steps and at the end (also after stop()); `resume` continues the exact trajectory.
 * A run owns the checkpoints it writes (its run id is in each sidecar) and prunes only its own.
 */
export interface CheckpointOptions {
  dir: string;
  everySteps?: number;
  /** Checkpoints kept (default 3). */
  keep?: number;
  /**
   * true: continue from the newest checkpoint in `dir` that passes full verification (an error when there is none);
   * 'if-present': the same, or a fresh run when `dir` holds no checkpoint at all (for job schedulers that restart).
   */
  resume?: boolean | 'if-present';
  /** A fresh run into a directory holding another run's checkpoints: replace them (removed after this run's first). */
  overwrite?: boolean;
}

export interface TrainOptions {
  model: ModelSpec;
  optimizer: OptimizerSpec;
  /** Clip the reduced gradient by its global norm. */
  clipNorm?: number;
  /** Keep an exponential moving average of the weights (used for evaluation). */
  emaDecay?: number;
  /** mnist({ batchSize }), cifar10({ batchSize, dir? | generated? }) or blocks({ batchSize }) (src/data/inputs.ts). */
  data: DataInput;
  /** Give epochs or steps (steps count resumed ones too). */
  epochs?: number;
  steps?: number;
  /** Seed of initialisation and data order (default 0). */
  seed?: number;
  /** Overlap the gradient all-reduce with backward, bucket by bucket (default false; docs/multi-process.md). */
  overlap?: boolean;
  /** With overlap: the byte cap of one gradient bucket (default 1 MiB). */
  bucketBytes?: number;
  /** Z (issue 16): each tower updates only its shard of the weights and optimizer state (ZeRO-1). Unset: on for exactly two CPU towers in one synchronous process without `overlap` or a chosen reduction strategy, else off (Note [Sharded update]). */
  shardUpdate?: boolean;
  /** Evaluate on the test set after each epoch (tower 0, EMA weights when kept). */
  evaluate?: boolean;
  // P (issue 16): pipelined steps.
  /** Launch step t+1 while step t runs (default true; same weights and events either way; Note [Pipelined steps]). */
  pipeline?: boolean;
  guard?: GuardOptions;
  checkpoint?: CheckpointOptions;
  /** TensorBoard event files (loss, learning rate, examples/sec, gradient norm, accuracy). */
  logDir?: string;
  /** Also write weight histograms to the event files every N steps (read between steps). */
  histogramsEvery?: number;
  /** A Chrome trace-event timeline with one track per tower (open in Perfetto or chrome://tracing). */
  traceFile?: string;
  /**
   * 'sync' (default): one update per step from every tower's gradient. 'async': a parameter server applies each
   * tower's gradient as it arrives, the towers do not wait for each other (docs/async.md).
   */
  mode?: 'sync' | 'async';
  /** async: a tower runs at most this many iterations ahead of the slowest (default 4; 0: lock-step; 'unbounded' or Infinity). */
  maxStaleness?: number | 'unbounded';
  /** async: each update's learning rate divided by 1 + its lag (updates since its tower pulled); default false. */
  stalenessLr?: boolean;
  /** async: the run fails when fewer towers than this remain (default 1). */
  minTowers?: number;
}

const positiveInt = z.number().int('expected an integer').positive('expected a positive integer');
const lastBatch = z.enum(['drop', 'keep']).default('drop');
const shuffle = z.boolean().default(true);

export const dataSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('mnist'), batchSize: positiveInt, dir: z.string().min(1).optional(), lastBatch, shuffle }).strict(),
  z
    .object({
      kind: z.literal('cifar10'),
      batchSize: positiveInt,
      dir: z.string().min(1).optional(),
      generated: z.object({ count: positiveInt.optional(), testCount: positiveInt.optional(), seed: z.number().int().min(0).optional() }).strict().optional(),
      augment: z.boolean().optional(),
      lastBatch,
      shuffle,
    })
    .strict()
    .refine((d) => d.dir === undefined || d.generated === undefined, { message: 'give dir (the CIFAR-10 binary files) or generated, not both' }),
  z
    .object({
      kind: z.literal('blocks'),
      batchSize: positiveInt,
      count: positiveInt.optional(),
      dim: positiveInt.optional(),
      seed: z.number().int().min(0).optional(),
      lastBatch,
      shuffle,
    })
    .strict(),
]);

/**
 * How a run is laid out over devices and threads: what a resumed run may change. Each field says whether a change
 * keeps the trajectory bit-identical (src/coordinator/layout.ts says so on resume); others add their fields here.
 */
export const layoutSchema = z
  .object({
    /** The towers' devices in rank order: their number and kinds set the all-reduce's summation (changes the bits). */
    towers: z.array(z.string()),
    /** GEMM threads per tower: never changes the bits (Note [GEMM threads] in cpp/cpu/gemm.cc). */
    gemmThreads: z.array(z.number().int().positive()),
    /** What computes the products (gemmInfo().kernel, or the float64 reference): another one rounds differently. */
    gemm: z.string(),
    /** The all-reduce schedule's name: another one sums in another order. */
    reduction: z.string(),
    /** 'speed' shares follow measured speed, so no two runs split a batch alike. */
    shares: z.enum(['equal', 'speed']),
    shardUpdate: z.boolean().optional(), // Z: the sharded update sums in another order (Note [Sharded update])
  })
  .strict();
export type Layout = z.output<typeof layoutSchema>;

// Note [Run settings]: the settings a training trajectory depends on (Note [Exact resume]): model, optimizer,
// clipping, EMA, seed and data. They are a part of the train options' schema, saved resolved (defaults filled in)
// with every checkpoint, and compared field by field when a run resumes: any difference is an error naming the
// fields. The run's layout (layoutSchema: towers, GEMM threads and kernel, reduction, shares) is saved with them;
// a resumed run may change it, and is told whether its trajectory stays bit-identical.
const runSettingsShape = {
  model: modelSchema,
  optimizer: optimizerSchema,
  clipNorm: z.number().positive().optional(),
  emaDecay: z.number().gt(0).lt(1).optional(),
  seed: z.number().int().min(0).default(0),
  data: dataSchema,
  mode: z.enum(['sync', 'async']).default('sync'), // I (issue 15): synchronous or parameter-server training
  maxStaleness: z.union([z.number().int().min(0), z.literal(Infinity), z.literal('unbounded')]).optional(), // I: async staleness bound
  stalenessLr: z.boolean().optional(), // I: async: learning rate / (1 + lag)
  overlap: z.boolean().optional(), // overlap the all-reduce with backward in buckets (default off; Note [Overlapped all-reduce], docs/multi-process.md)
  bucketBytes: z.number().int().min(4).optional(), // with overlap, one bucket's byte cap (default 1 MiB, DEFAULT_BUCKET_BYTES)
};
export const runSettingsSchema = z
  .object({
    ...runSettingsShape,
    layout: layoutSchema.optional(), // what the towers are and how they compute: may change on resume (src/coordinator/layout.ts)
    // The world a checkpoint was written on (H, issue 14): recorded, not a train option; a resume on another world
    // is allowed and says whether it stays bit-identical (src/group/resume.ts).
    world: z
      .object({
        processes: positiveInt, // processes in the run (the group's world size)
        towersPerProcess: positiveInt, // towers in each process (the group's slots)
      })
      .strict()
      .optional(),
  })
  .strict();
export type RunSettings = z.output<typeof runSettingsSchema>;

export const trainOptionsSchema = z
  .object({
    ...runSettingsShape,
    epochs: positiveInt.optional(),
    steps: positiveInt.optional(),
    evaluate: z.boolean().default(false),
    pipeline: z.boolean().optional(), // P (issue 16): step t+1 launched while step t runs (default on; Note [Pipelined steps])
    guard: z
      .object({
        nonFinite: z.enum(['halt', 'skip', 'rollback']).default('halt'),
        rollbackLrFactor: z.number().gt(0).lt(1).default(0.5),
        maxRollbacks: z.number().int().min(1).default(3),
        stepTimeoutMs: positiveInt.optional(),
        replicaCheckEvery: z.number().int().min(0).default(100),
        replicaPolicy: z.enum(['halt', 'rebroadcast']).default('halt'),
      })
      .strict()
      .default({ nonFinite: 'halt', rollbackLrFactor: 0.5, maxRollbacks: 3, replicaCheckEvery: 100, replicaPolicy: 'halt' }),
    checkpoint: z
      .object({
        dir: z.string().min(1),
        everySteps: positiveInt.optional(),
        keep: positiveInt.default(3),
        resume: z.union([z.boolean(), z.literal('if-present')]).default(false),
        overwrite: z.boolean().default(false),
      })
      .strict()
      .optional(),
    logDir: z.string().min(1).optional(),
    histogramsEvery: positiveInt.optional(),
    traceFile: z.string().min(1).optional(),
    minTowers: positiveInt.optional(), // I: async: fewest towers that may remain
    shardUpdate: z.boolean().optional(), // Z (issue 16): sharded optimizer update, in the layout (Note [Sharded update])
  })
  .strict()
  .refine((o) => o.epochs !== undefined || o.steps !== undefined, { message: 'give epochs or steps', path: ['epochs'] })
  .refine((o) => o.bucketBytes === undefined || o.overlap === true, {
    message: 'bucketBytes caps a bucket of the overlapped all-reduce and is used only with overlap: true; add overlap: true (CLI --overlap) or drop bucketBytes (--bucket-mb)',
    path: ['bucketBytes'],
  });
export type ResolvedTrainOptions = z.output<typeof trainOptionsSchema>;

export const runtimeOptionsSchema = z
  .object({
    devices: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)], { message: "expected a device list like 'cpu*2' or ['cpu:0', 'cpu:1']" }),
    reduction: z.unknown().optional(), // checked by planReduction, which knows custom strategies
    callTimeoutMs: positiveInt.default(60_000),
    collectiveTimeoutMs: positiveInt.default(30_000),
    shares: z.enum(['equal', 'speed']).default('equal'),
    gemmThreads: z.number().int('expected an integer').min(1).max(256).optional(),
    maxTowers: positiveInt.default(DEFAULT_MAX_TOWERS),
    group: z.union([z.boolean(), z.custom<GroupSettings>((v) => typeof v === 'object' && v !== null && !Array.isArray(v), 'expected true or the group settings')]).optional(), // checked by src/group/options.ts
    layout: z.object({ extraTowers: z.enum(['threads', 'fold']).optional(), cores: positiveInt.optional(), pin: z.boolean().optional() }).strict().optional(), // Note [CPU layout], Note [Thread placement]
  })
  .strict();
export type ResolvedRuntimeOptions = Omit<z.output<typeof runtimeOptionsSchema>, 'reduction'> & { reduction: ReductionOptions | undefined };

/** Validates createRuntime's options (plain-JavaScript callers get errors naming the field). */
export function parseRuntimeOptions(o: unknown): ResolvedRuntimeOptions {
  const r = validate(runtimeOptionsSchema, o, 'runtime options', "Example: createRuntime({ devices: 'cpu*2', reduction: { algorithm: 'ring' } })");
  return { ...r, reduction: r.reduction === undefined ? undefined : parseReduction(r.reduction) };
}

/** Validates train()'s options once; everything downstream uses the resolved settings. */
export function parseTrainOptions(o: unknown): ResolvedTrainOptions {
  return validate(trainOptionsSchema, o, 'train options', 'Example: rt.train({ model, optimizer: { type: "sgd", lr: 0.1 }, data: mnist({ batchSize: 128 }), epochs: 1 })');
}

/** The run settings of resolved train options, and the layout they run on (Note [Run settings]). */
export function runSettingsOf(o: ResolvedTrainOptions, layout?: Layout): RunSettings {
  const { model, optimizer, clipNorm, emaDecay, seed, data, mode, maxStaleness, stalenessLr } = o;
  const async = { ...(maxStaleness !== undefined ? { maxStaleness } : {}), ...(stalenessLr !== undefined ? { stalenessLr } : {}) };
  return { model, optimizer, ...(clipNorm !== undefined ? { clipNorm } : {}), ...(emaDecay !== undefined ? { emaDecay } : {}), seed, data, mode, ...async, ...(layout ? { layout } : {}) };
}

// ---- compile-time checks: the named types accept exactly what the schemas accept --------------------------------
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const checks: [
  Same<TrainOptions, z.input<typeof trainOptionsSchema>>,
  Same<DataInput, z.input<typeof dataSchema>>,
  Same<ReductionOptions, z.input<typeof reductionSchema>>,
  Same<Omit<RuntimeOptions, 'reduction'>, Omit<z.input<typeof runtimeOptionsSchema>, 'reduction'>>,
] = [true, true, true, true];
void checks;
