// An in-process collective over towers on ReferenceBackends: runs the same schedules (validated by the caller, as
// for native communicators) as the native communicator (Note [Schedules]) over the towers' float64 arenas, with a deadline and abort, so the coordinator
// is testable without worker threads or native code (the tinygrad lesson).
import { COPY, type Schedule } from '../scheduler/schedule.js';

type Waiter = { resolve: (waitMs: number) => void; reject: (e: Error) => void; since: number };

const comms = new Map<number, ReferenceCollective>();
let nextId = 1;

/**
 * One collective over `buffers` (one live float64 array per rank). Each rank's program reaches its '@collective'
 * op and arrives; when every rank has arrived the schedule runs phase by phase (a validated schedule never lets a
 * rank write what another reads in the same phase, so running the ranks in order equals running them at once) and
 * everyone goes on. A rank that fails aborts the collective for all; a deadline bounds the wait.
 */
export class ReferenceCollective {
  readonly id = nextId++;
  private waiting: Array<Waiter | undefined>;
  private arrived = 0;
  private timer: NodeJS.Timeout | undefined;
  private abortedWhy: string | undefined;

  constructor(
    private readonly buffers: Float64Array[],
    schedule: Schedule,
    private readonly timeoutMs: number,
    private readonly names: string[],
  ) {
    this.schedule = this.accept(schedule);
    this.waiting = Array<Waiter | undefined>(buffers.length).fill(undefined);
    comms.set(this.id, this);
  }

  private schedule: Schedule;

  /** A private copy of the schedule (validated by the caller): later edits to the caller's object change nothing. */
  private accept(schedule: Schedule): Schedule {
    return structuredClone(schedule);
  }

  get size(): number {
    return this.buffers.length;
  }

  /** Replaces the schedule; only between steps (no rank may be waiting). */
  setSchedule(schedule: Schedule): void {
    if (this.arrived > 0) throw new Error(`reference collective ${this.id}: cannot change the schedule while ${this.arrived} tower(s) wait in it`);
    this.schedule = this.accept(schedule);
  }

  /** Rank `rank` arrives; resolves with the ms it waited for the others once the schedule has run. */
  arrive(rank: number): Promise<number> {
    const where = `all-reduce on ${this.names[rank] ?? '?'} (rank ${rank})`;
    if (this.abortedWhy !== undefined) return Promise.reject(new Error(`${where} stopped: ${this.abortedWhy}`));
    if (!(rank >= 0 && rank < this.size) || this.waiting[rank]) return Promise.reject(new Error(`${where}: not a free rank of this collective`));
    return new Promise<number>((resolve, reject) => {
      this.waiting[rank] = { resolve, reject, since: performance.now() };
      this.arrived++;
      if (this.arrived === 1) {
        this.timer = setTimeout(() => {
          const missing = this.waiting.map((w, r) => (w ? -1 : r)).filter((r) => r >= 0);
          this.abort(`timed out after ${this.timeoutMs} ms (${this.schedule.name}) waiting for the other towers (${missing.map((r) => this.names[r]).join(', ')})`);
        }, this.timeoutMs);
      }
      if (this.arrived === this.size) this.complete();
    });
  }

  private complete(): void {
    clearTimeout(this.timer);
    for (const phase of this.schedule.phases)
      phase.forEach((moves, r) => {
        const mine = this.buffers[r]!;
        for (const [kind, peer, off, len] of moves) {
          const theirs = this.buffers[peer]!;
          if (kind === COPY) mine.set(theirs.subarray(off, off + len), off);
          else for (let i = off; i < off + len; i++) mine[i] = mine[i]! + theirs[i]!;
        }
      });
    const now = performance.now();
    const waiters = this.waiting;
    this.waiting = Array<Waiter | undefined>(this.size).fill(undefined);
    this.arrived = 0;
    for (const w of waiters) w!.resolve(now - w!.since);
  }

  /** Stops the collective for good: every waiting rank and every later arrival fails with `why`. */
  abort(why: string): void {
    clearTimeout(this.timer);
    if (this.abortedWhy === undefined) this.abortedWhy = why;
    this.waiting.forEach((w, r) => w?.reject(new Error(`all-reduce on ${this.names[r]} (rank ${r}) stopped: ${this.abortedWhy}`)));
    this.waiting = Array<Waiter | undefined>(this.size).fill(undefined);
    this.arrived = 0;
  }

  release(): void {
    this.abort('the collective was released');
    comms.delete(this.id);
  }
}

/** The collective a '@collective' op names, or a clear error. */
export function referenceCollective(id: number): ReferenceCollective {
  const c = comms.get(id);
  if (!c) throw new Error(`no reference collective with id ${id}; it was released or never created`);
  return c;
}
