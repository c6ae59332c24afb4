// Checkpointing and resume: who owns a checkpoint directory, which checkpoint a run resumes from, and when to save.
//
// Note [Exact resume]: the trajectory is a function of (weights, optimizer slots, EMA,
// step, data position, run settings). The checkpoint holds all of them; the data order depends only on (seed,
// epoch), so the resumed run replays the same batches from the saved position and every tower gets the same state
// bit for bit. The run settings are compared field by field (Note [Run settings]); the layout may differ, and the
// run is told whether its trajectory stays bit-identical (src/coordinator/layout.ts).
//
// Note [Checkpoint ownership]: a run owns the checkpoints it writes: a fresh run gets a new run id, a resumed run
// keeps the id of the checkpoint it resumed, and every sidecar records it. Pruning removes only the run's own older
// checkpoints and never the one just written. A fresh run refuses a directory that holds any checkpoint (another
// run's, or a damaged one) unless told: resume it, or overwrite (the others go once this run's first checkpoint is
// safely written). Resuming when nothing passes verification is an error, except with 'if-present' and a directory
// without checkpoints (a job scheduler's first start). The final checkpoint is written once.
import { randomUUID } from 'node:crypto';
import { basename } from 'node:path';
import { z } from 'zod';
import { ConfigError } from '../errors.js';
import { checkpointFiles, newestValidCheckpoint, removeOtherRuns, saveCheckpoint, type LoadedCheckpoint } from '../io/checkpoint.js';
import { resumeWorld, sharedLoad } from '../group/shared-checkpoint.js';
import { runSettingsSchema, type Layout, type ResolvedTrainOptions, type RunSettings } from '../options.js';
import { describeLayoutChange, layoutChange } from './layout.js';
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
  lrScale: z.number().positive(),
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

type CheckpointOptions = NonNullable<ResolvedTrainOptions['checkpoint']>;

export class Checkpoints {
  /** This run's id (a resumed run takes its checkpoint's; Note [Checkpoint ownership]). */
  private run: string = randomUUID();
  private lastSaved: number | undefined;
  private overwritePending = false;

  constructor(
    private readonly towers: TowerSet,
    private readonly o: CheckpointOptions | undefined,
    /** The run settings without the layout (they are compared strictly on resume). */
    private readonly settings: RunSettings,
    private readonly layout: () => Layout,
    private readonly warn: (message: string) => void,
  ) {}

  get enabled(): boolean {
    return this.o !== undefined;
  }

  /**
   * Before step 1, before the towers are built: a fresh run checks that the directory is its own; a resuming run
   * finds the newest checkpoint that passes full verification and checks its settings. Returns it, or undefined.
   */
  async plan(): Promise<LoadedCheckpoint | undefined> {
    const ck = await this.shared('plan the checkpoints', () => this.planHere()); // rank 0 decides, every rank gets it
    if (ck) this.lastSaved = ck.step;
    return ck;
  }

  /**
   * Rank 0 runs `find` (its errors fail every rank) and every rank gets the checkpoint it found (Note [Process
   * dimension]); in one process, just `find`.
   */
  private async shared(what: string, find: () => Promise<LoadedCheckpoint | undefined>): Promise<LoadedCheckpoint | undefined> {
    const world = this.towers.world;
    let found: LoadedCheckpoint | undefined;
    const path = await world.fromRoot(what, async () => {
      found = await find();
      return found ? new TextEncoder().encode(found.path) : undefined;
    });
    if (world.processes === 1 || path === undefined) return found;
    const ck = await sharedLoad(world, new TextDecoder().decode(path));
    return { ...ck, run: found?.run ?? this.run };
  }

  private async planHere(): Promise<LoadedCheckpoint | undefined> {
    const o = this.o;
    if (!o) return undefined;
    const sidecars = (await checkpointFiles(o.dir)).filter((f) => f.name.endsWith('.json'));
    if (o.resume !== false) {
      const skipped: string[] = [];
      const ck = await newestValidCheckpoint(o.dir, {
        onSkip: (path, why) => {
          skipped.push(`${basename(path)}: ${why}`);
          this.warn(`skipping checkpoint ${path}: ${why}`);
        },
      });
      if (ck) {
        this.checkSettings(ck);
        this.run = ck.run;
        this.lastSaved = ck.step;
        return ck;
      }
      if (o.resume === true || sidecars.length > 0)
        throw new ConfigError(
          `checkpoint.resume: nothing to resume in '${o.dir}': ` +
            (sidecars.length === 0 ? 'it holds no checkpoint' : `none of its ${sidecars.length} checkpoint(s) passes verification:\n  ${skipped.join('\n  ')}\n`) +
            (sidecars.length === 0 ? "; check the directory, or use checkpoint.resume: 'if-present' to start fresh when there is none." : 'Start fresh in another directory, or replace them with checkpoint.overwrite.'),
          'checkpoint.resume',
        );
    }
    if (sidecars.length > 0) {
      if (!o.overwrite)
        throw new ConfigError(
          `checkpoint.dir: '${o.dir}' already holds ${sidecars.length} checkpoint(s) (${sidecars.map((f) => f.name).slice(-3).join(', ')}${sidecars.length > 3 ? ', ...' : ''}) ` +
            'of another run; a fresh run would mix with them. Resume it with checkpoint.resume, write to another directory, ' +
            'or replace them with checkpoint.overwrite (they are removed once this run has written its first checkpoint).',
          'checkpoint.dir',
        );
      this.overwritePending = true;
    }
    return undefined;
  }

  private checkSettings(ck: LoadedCheckpoint): void {
    const state = stateSchema.safeParse(ck.state);
    if (!state.success)
      throw new ConfigError(`checkpoint.dir: ${ck.path}: its run state is not readable (${state.error.issues[0]?.message ?? 'invalid'}); start fresh in another directory`, 'checkpoint.dir');
    const saved = runSettingsSchema.safeParse(state.data.settings);
    // The layout and the world may differ (the resume says what that does to the bits); the rest may not.
    const worlds = resumeWorld(saved.success ? { ...saved.data, layout: undefined } : this.settings, { ...this.settings, layout: undefined });
    const given: unknown = JSON.parse(JSON.stringify(worlds.given));
    const diff = saved.success ? settingsDiff(JSON.parse(JSON.stringify(worlds.saved)), given) : [`(settings): not readable by this version (${saved.error.issues[0]?.message})`];
    if (diff.length > 0)
      throw new ConfigError(
        `checkpoint ${ck.path} was written with other settings, so resuming would not continue its trajectory:\n  ${diff.join('\n  ')}\n` +
          'Use the same settings, or another checkpoint dir to start fresh.',
        'checkpoint.resume',
      );
  }

  /** The newest checkpoint of this run that passes verification (the non-finite rollback's target). */
  async latest(): Promise<LoadedCheckpoint | undefined> {
    const o = this.o;
    if (!o) return undefined;
    return this.shared('find the latest checkpoint', () => newestValidCheckpoint(o.dir, { run: this.run, onSkip: (path, why) => this.warn(`skipping checkpoint ${path}: ${why}`) }));
  }

  /** Loads `ck` into every tower (the towers are built); says so when the layout changed. Returns the state to continue from. */
  async restore(ck: LoadedCheckpoint, opts: { resuming: boolean }): Promise<Restored> {
    const state = stateSchema.parse(ck.state);
    const saved = runSettingsSchema.safeParse(state.settings);
    const worlds = resumeWorld(saved.success ? saved.data : this.settings, this.settings); // Note [Resume on another world]
    let { bitIdentical, note } = worlds;
    if (opts.resuming) {
      const change = layoutChange(saved.success ? saved.data.layout : undefined, this.layout());
      if (change) {
        this.warn(describeLayoutChange(ck.path, change));
        bitIdentical &&= change.bitIdentical;
        note += `; the layout changed (${change.bitIdentical ? 'keeps the bits' : 'changes the bits'})`;
      }
    }
    const tensors = [...ck.tensors].map(([name, t]) => [name, t.data] as [string, Float32Array]);
    await this.towers.all((p) => p.writeState(tensors));
    return { step: ck.step, next: state.next, lrScale: state.lrScale, bitIdentical, note };
  }

  /** Saves tower 0's state (all replicas are equal) with the run state; returns the sidecar path, or undefined. */
  async save(s: TrainState): Promise<string | undefined> {
    if (!this.o || s.step === this.lastSaved || !this.towers.world.writesCheckpoints) return undefined; // written once, by rank 0
    const tensors = await this.towers.readState(); // tower 0's, optimizer shards merged (Note [Sharded update])
    const state = { settings: { ...this.settings, layout: this.layout() }, next: s.next, lrScale: s.lrScale, towers: this.towers.devices };
    const path = await saveCheckpoint(this.o.dir, { step: s.step, tensors, state, run: this.run }, { keep: this.o.keep });
    this.lastSaved = s.step;
    if (this.overwritePending) {
      this.overwritePending = false;
      const removed = await removeOtherRuns(this.o.dir, this.run);
      if (removed > 0) this.warn(`checkpoint.overwrite: removed ${removed} checkpoint(s) of another run from ${this.o.dir}`);
    }
    return path;
  }
}
