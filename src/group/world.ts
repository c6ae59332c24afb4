// The process dimension of a run, as the coordinator sees it: how many processes, which one this is, and the few
// things a step, a check or a checkpoint does differently when towers live in several processes. One process is
// the local world (src/group/world.ts: every method a no-op or the identity); a process group is the process world
// (src/group/process-world.ts). The coordinator calls the same methods either way: one path.
import type { Schedule, ScheduleRequest } from '../scheduler/schedule.js';
import { planReduction } from '../scheduler/select.js';
import type { ReductionOptions } from '../options.js';
import type { ConnectGroup } from './group.js';

// Note [Process dimension]: a run over P processes with T towers each has P·T towers, numbered rank·T + t.
//   - Shards: the global batch is split over all P·T towers (shardSizes, Note [Shard weighting]: each shard
//     weighted by 1/global batch); every process computes the same plan from the seed and steps only its T
//     shards (World.mine), so it reads only its rows.
//   - Schedule: the hierarchical all-reduce (src/scheduler/hierarchical.ts), the same in every process.
//   - Before step 1 every process agrees on everything the trajectory and the collectives depend on (run
//     settings, steps, guards, the schedule and its length, the data set's size): Gloo cannot tell when two
//     processes disagree on a length, so a difference fails every rank before any step, naming rank and field.
//   - Start-up weights: tower 0 of rank 0 initialises; its weight arena is broadcast (bytes) to tower 0 of every
//     rank, which broadcasts locally as before (Note [Synchronous update]).
//   - After each step one small all-gather sums the processes' losses and agrees whether to stop (a stop
//     requested on any rank stops every rank after the same step).
//   - The replica check compares tower 0's hash across processes too; 'rebroadcast' copies rank 0's state.
//   - Checkpoints: rank 0 writes; on resume rank 0 reads and broadcasts the checkpoint, so every rank resumes
//     from the same bytes, with or without a shared filesystem (src/group/shared-checkpoint.ts).
//   - A rank whose run fails stops the group with why (World.fail), so the others fail at once naming it, its
//     host and what failed, instead of waiting for their deadline; close() returns on every rank.

/** The shape of the replica check's report (src/coordinator/replicas.ts's ReplicaReport). */
export interface WorldReplicaReport {
  consistent: boolean;
  differing: string[];
  detail: string;
}

/** What run settings record about the world a checkpoint was written on (src/options.ts, runSettingsSchema). */
export interface WorldShape {
  processes: number;
  towersPerProcess: number;
}

export interface World {
  /** Processes in the run, this one's rank, towers in each process, towers in all. */
  readonly processes: number;
  readonly rank: number;
  readonly towersPerProcess: number;
  readonly towers: number;
  readonly shape: WorldShape;
  /** The processes of the run on this machine (they share its cores). */
  readonly processesOnHost: number;
  /** This process's index among them (0 in one process): its share of the host's CPUs (Note [Thread placement]). */
  readonly localRank: number;
  /** Whether this is a process group (several processes that agreed on a run), not one process alone. */
  readonly grouped: boolean;
  /** Rank 0 writes checkpoints; every rank can resume (Note [Process dimension]). */
  readonly writesCheckpoints: boolean;
  /** Plans and validates the gradient all-reduce for this world. */
  plan(reduction: ReductionOptions | undefined, req: ScheduleRequest): Schedule;
  /** The group connection for this world, given the local one. */
  connect(local: ConnectGroup): ConnectGroup;
  /** This process's part of a list over all towers of all processes (shards, shard sizes). */
  mine<T>(all: T[]): T[];
  /** Every process has `value` for `what`, or every rank fails naming the ranks and fields that differ. */
  agree(what: string, value: unknown): Promise<void>;
  /** After step `step`: the loss summed over every process, and whether any process asked to stop. */
  afterStep(step: number, localLoss: number, stopRequested: boolean): Promise<{ loss: number; stop: boolean }>;
  /** Whether the run stops before its next step (`local`: this process's own stop request). */
  stopping(local: boolean): boolean;
  /** This process's replica report and its tower 0's hash, compared across processes. */
  compareReplicas(local: WorldReplicaReport, total: string, tensors: Array<[string, string]>): Promise<WorldReplicaReport>;
  /** Rank 0's bytes on every rank (rank 0 runs `produce`; an error there fails every rank, naming it). */
  fromRoot(what: string, produce: () => Promise<Uint8Array | undefined>): Promise<Uint8Array | undefined>;
  /** This process's run failed: the other processes fail at once, naming this rank, its host and `why`. */
  fail(why: string): void;
  /** Leaves the world; returns at once, never throws. */
  close(): void;
}

/** One process: the towers of this process are all the towers. */
export function localWorld(towers: number): World {
  return {
    processes: 1,
    rank: 0,
    towersPerProcess: towers,
    towers,
    shape: { processes: 1, towersPerProcess: towers },
    processesOnHost: 1,
    localRank: 0,
    grouped: false,
    writesCheckpoints: true,
    plan: planReduction,
    connect: (local) => local,
    mine: (all) => all,
    agree: async () => undefined,
    afterStep: async (_step, loss, stop) => ({ loss, stop }),
    stopping: (local) => local,
    compareReplicas: async (r) => r,
    fromRoot: (_what, produce) => produce(),
    fail: () => undefined,
    close: () => undefined,
  };
}
