// How towers are connected: a group owns the collectives its towers run (the gradient all-reduce inside each step,
// the weight broadcast at start-up): a local group over the towers of this process, whose schedule's remote steps
// reach the towers of other processes through a process group (Note [Process dimension] in src/group/world.ts).
import type { Schedule } from '../scheduler/schedule.js';
import type { TowerPort } from '../tower-port/port.js';

export interface TowerGroup {
  readonly size: number;
  /**
   * Installs a new all-reduce schedule (validated by the caller), and with overlap one per bucket (in bucket order);
   * only between steps, never under a collective.
   */
  setSchedule(schedule: Schedule, buckets?: Schedule[]): void;
  /**
   * Across processes: copies tower 0's weights from rank 0 to tower 0 of every process (after initWeights, before
   * the local broadcast). Absent for a group of one process.
   */
  shareWeights?(): Promise<void>;
  /** Frees every tower blocked inside a collective (the watchdog); the group is unusable afterwards. */
  abort(): void;
  /** Frees the group's collectives; safe to call twice and after abort(). */
  release(): void;
}

export interface GroupOptions {
  /** The gradient all-reduce's schedule (already validated for ports.length ranks and `length` elements). */
  schedule: Schedule;
  /** Elements in each tower's arenas (its parameter count). */
  length: number;
  /** Deadline of one wait inside a collective (ms). */
  timeoutMs: number;
  /** The process group whose slot contexts run the schedule's remote steps (a run over several processes). */
  remote?: RemoteGroup;
  /**
   * Overlap the all-reduce with backward: the buckets (src/scheduler/buckets.ts) and each one's schedule, validated
   * for its length (Note [Overlapped all-reduce] in cpp/collective/overlap.h). Native towers only.
   */
  buckets?: Array<{ offset: number; length: number; schedule: Schedule }>;
  /** The sharded update (Note [Sharded update]): each tower's shard of the arenas; `schedule` then goes unused. */
  shards?: Array<[number, number]>;
  /** With `shards`: every tower's weight and EMA arena is tower 0's memory (Note [Shared weights]): nothing to copy. */
  sharedWeights?: boolean;
}

/** What a local group needs of a process group (src/group/process-group.ts). */
export interface RemoteGroup {
  /** Communicator `comm`'s remote steps run on this group's slot contexts. */
  attach(comm: number): void;
  /** [offset, offset+length) of an f32 buffer copied from process `root` to every other process on `slot`'s context. */
  broadcastBuffer(buffer: number, slot: number, offset: number, length: number, root: number): Promise<void>;
}

/** Connects built towers into a group and tells each its place (TowerPort.joinGroup). */
export type ConnectGroup = (ports: TowerPort[], opts: GroupOptions) => Promise<TowerGroup>;
