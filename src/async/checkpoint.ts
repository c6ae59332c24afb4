// Checkpoints of the parameter server (with several, of all of them: Note [Shard checkpoints]): its state (master weights, optimizer slots, EMA) from one moment between two
// pushes, and its version, written with the synchronous mode's atomic checkpoint files (src/io/checkpoint.ts,
// unchanged) and checked against the run settings the same way on resume (src/coordinator/checkpoints.ts).
//
// Note [Async resume]: an asynchronous run is not bit-reproducible: which tower pushes when depends on timing, so
// the order of updates, their lags and the batches each tower computes differ run to run (maxStaleness 0 is the
// exception: its rounds push in batch order, Note [Lock-step rounds] in rounds.ts; but a resume computes the round
// that was in flight again, from the restored weights). What a checkpoint keeps exactly is the server's
// state at its version: resuming restores those tensors bit for bit, continues the version count (so the learning
// rate schedule and the data order continue from there: batch `version` of the seeded order is the next handed
// out) and the staleness bound. What it does not keep: the gradients that were in flight (computed on older
// weights, not yet pushed), which are computed again from the restored weights, and the towers' clocks, which
// restart together.
import { ConfigError } from '../errors.js';
import { latestCheckpoint, loadCheckpoint, saveCheckpoint } from '../io/checkpoint.js';
import { runSettingsSchema, type RunSettings } from '../options.js';
import { settingsDiff } from '../coordinator/checkpoints.js';
import { stateTensors } from '../model/state.js';
import type { ServerTower } from './server.js';

/** Run settings as JSON holds them: an unbounded maxStaleness is the string 'unbounded'. */
export function jsonSettings(settings: RunSettings): RunSettings {
  return settings.maxStaleness === Infinity ? { ...settings, maxStaleness: 'unbounded' } : settings;
}

export class AsyncCheckpoints {
  private readonly settings: RunSettings;

  constructor(
    private readonly server: ServerTower,
    private readonly o: { dir: string; keep: number } | undefined,
    settings: RunSettings,
    private readonly perEpoch: number,
    private readonly towers: string[],
  ) {
    this.settings = jsonSettings(settings);
  }

  latest(): Promise<string | undefined> {
    return this.o ? latestCheckpoint(this.o.dir) : Promise.resolve(undefined);
  }

  /** The lead of several servers: brings every other server's shard of the state into its tower at version v
   *  (Note [Shard checkpoints] in src/async/shard-link.ts). */
  gather: ((version: number) => Promise<void>) | undefined;

  /** Writes the server's state now (between two pushes: the caller holds them back); returns the sidecar path. */
  async save(): Promise<{ path: string; version: number } | undefined> {
    if (!this.o) return undefined;
    await this.gather?.(this.server.info().version);
    const snap = await this.server.snapshot(this.server.tower.params);
    const v = snap.version;
    const state = {
      settings: this.settings,
      next: { epoch: Math.floor(v / this.perEpoch), batch: v % this.perEpoch },
      lrScale: 1,
      towers: this.towers,
      async: { version: v },
    };
    const path = await saveCheckpoint(this.o.dir, { step: v, tensors: snap.tensors, state }, { keep: this.o.keep });
    return { path, version: v };
  }

  /** Loads `path` into the server's tower after checking its settings; returns the version to serve from. */
  async restore(path: string): Promise<number> {
    const ck = await loadCheckpoint(path);
    const saved = runSettingsSchema.safeParse(ck.state.settings);
    const given: unknown = JSON.parse(JSON.stringify(this.settings));
    const diff = saved.success ? settingsDiff(JSON.parse(JSON.stringify(saved.data)), given) : [`(settings): not readable by this version (${saved.error.issues[0]?.message})`];
    if (diff.length > 0)
      throw new ConfigError(
        `checkpoint ${path} was written with other settings, so resuming would not continue its run:\n  ${diff.join('\n  ')}\n` +
          'Use the same settings, or another checkpoint dir to start fresh.',
        'checkpoint',
      );
    const t = this.server.tower;
    // Every parameter (the lead of several servers sends the other shards on: Note [Shard checkpoints]).
    const plan = stateTensors(this.server.tower.params).map(({ name, handle, p }): [number, Float32Array] => {
      const v = ck.tensors.get(name);
      if (!v) throw new ConfigError(`checkpoint ${path} has no tensor '${name}' that the parameter server needs`, 'checkpoint');
      if (v.data.length !== p.numel) throw new ConfigError(`checkpoint ${path}: tensor '${name}' has ${v.data.length} values, the model ${p.numel}`, 'checkpoint');
      return [handle, v.data];
    });
    for (const [h, data] of plan) t.backend.copyIn(h, data);
    return ck.step;
  }
}
