// Checkpointing and resume.
//
// Note [Exact resume]: the trajectory is a function of (weights, optimizer slots, EMA,
// step, data position, run settings). The checkpoint holds all of them; the data order depends only on (seed,
// epoch), so the resumed run replays the same batches from the saved position and every tower gets the same state
// bit for bit. The run settings are compared field by field (Note [Run settings]).
import { z } from 'zod';
import { ConfigError } from '../errors.js';
import { saveCheckpoint } from '../io/checkpoint.js';
import { resumeWorld, sharedLatest, sharedLoad } from '../group/shared-checkpoint.js';
import { runSettingsSchema, type RunSettings } from '../options.js';
import type { TowerSet } from './towers.js';

/** Where the next step's batch is: epoch and batch index within it. */
export interface Position {
  epoch: number;
  batch: number;
}

/** What a run carries besides the towers' tensors. */
export interface TrainState {
  step: number;
  next: Position;
  /** Lowered by each non-finite rollback (Note [Non-finite guard]). */
  lrScale: number;
}

/** Where a resume continued from: the state, and whether the trajectory stays bit-identical (Note [Resume on another world]). */
export interface Restored extends TrainState {
  bitIdentical: boolean;
  note: string;
}

const index = z.number().int().min(0);
const stateSchema = z.object({
  settings: z.unknown(),
  next: z.object({ epoch: index, batch: index }).strict(),
  lrScale: z.number().positive().default(1),
  towers: z.array(z.string()).optional(),
});

/** Every leaf where two JSON values differ, as 'path: saved X, given Y'. */
export function settingsDiff(saved: unknown, given: unknown, path = ''): string[] {
  const show = (v: unknown) => (v === undefined ? '(not set)' : JSON.stringify(v));
  const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null;
  if (isObj(saved) && isObj(given) && Array.isArray(saved) === Array.isArray(given)) {
    const keys = [...new Set([...Object.keys(saved), ...Object.keys(given)])];
    return keys.flatMap((k) => settingsDiff(saved[k], given[k], Array.isArray(saved) ? `${path}[${k}]` : path ? `${path}.${k}` : k));
  }
  return JSON.stringify(saved) === JSON.stringify(given) ? [] : [`${path || '(settings)'}: saved ${show(saved)}, given ${show(given)}`];
}

export class Checkpoints {
  constructor(
    private readonly towers: TowerSet,
    private readonly o: { dir: string; keep: number } | undefined,
    private readonly settings: RunSettings,
  ) {}

  get enabled(): boolean {
    return this.o !== undefined;
  }

  latest(): Promise<string | undefined> {
    return this.o ? sharedLatest(this.towers.world, this.o.dir) : Promise.resolve(undefined); // rank 0's, on every rank
  }

  /** Saves tower 0's state (all replicas are equal) with the run state; returns the sidecar path. */
  async save(s: TrainState): Promise<string | undefined> {
    if (!this.o || !this.towers.world.writesCheckpoints) return undefined; // rank 0 writes
    const tensors = await this.towers.ports[0]!.readState();
    const state = { settings: this.settings, next: s.next, lrScale: s.lrScale, towers: this.towers.devices };
    return saveCheckpoint(this.o.dir, { step: s.step, tensors, state }, { keep: this.o.keep });
  }

  /** Loads `path` into every tower after checking its settings; returns the run state to continue from. */
  async restore(path: string): Promise<Restored> {
    const ck = await sharedLoad(this.towers.world, path); // rank 0 reads it, every rank gets its bytes
    const state = stateSchema.safeParse(ck.state);
    if (!state.success) throw new ConfigError(`checkpoint ${path}: its run state is not readable (${state.error.issues[0]?.message ?? 'invalid'}); start fresh with another checkpoint dir`, 'checkpoint');
    const saved = runSettingsSchema.safeParse(state.data.settings);
    const worlds = resumeWorld(saved.success ? saved.data : this.settings, this.settings);
    const given: unknown = JSON.parse(JSON.stringify(worlds.given));
    const diff = saved.success ? settingsDiff(JSON.parse(JSON.stringify(worlds.saved)), given) : [`(settings): not readable by this version (${saved.error.issues[0]?.message})`];
    if (diff.length > 0)
      throw new ConfigError(
        `checkpoint ${path} was written with other settings, so resuming would not continue its trajectory:\n  ${diff.join('\n  ')}\n` +
          'Use the same settings, or another checkpoint dir to start fresh.',
        'checkpoint',
      );
    const tensors = [...ck.tensors].map(([name, t]) => [name, t.data] as [string, Float32Array]);
    await this.towers.all((p) => p.writeState(tensors));
    return { step: ck.step, next: state.data.next, lrScale: state.data.lrScale, bitIdentical: worlds.bitIdentical, note: worlds.note };
  }
}
