// The one step path (Note [One hand-off per step]): every training step of every port, faults included, goes
// through StepLauncher.step: the cached launch handles of the tower's compiled step program, the hyper block, one
// runWith to the device thread and back, the deadline, and the decoding of the reply.
import { TowerError } from '../errors.js';
import { HYPER_SIZE, HyperSlot } from '../native/hyper.js';
import { phaseOf, stepTimings } from '../model/tower.js';
import type { FaultSpec, StepLaunch, StepReply, StepRequest, StepVariant } from './protocol.js';

// Note [One step path]: tests arm a fault for one tower's step (src/testing/faults.ts -> the run's FaultPlan ->
// StepLauncher.step's `fault`), and it travels as the 4th argument of the very runWith call that runs every other
// step, into the same compiled program, whose '@fault' ops sit at fixed points in production too (unarmed they
// cost one integer compare). There is no test-only program, op list, worker method or collective hook: a faulted
// step is a production step with one armed point (test/one-step-path.test.ts checks it).

type Writes = Array<[number, Float32Array | Int32Array]>;

/** What runWith resolves with (native and reference alike). */
export interface RunResult {
  values: ArrayLike<number>;
  marks: ArrayLike<number>;
  startMs: number;
  waitMs: number;
  guardTripped: boolean;
}

/** runWith of contract section 1: writes, the program, reads, and one fault armed for this run only. */
export type RunWith = (program: number, writes: Writes, reads: number[], fault?: FaultSpec) => Promise<RunResult>;

export interface LauncherDeps {
  /** The tower's launch handles for (data set, batch size): compiled once, on the tower's side. */
  prepare(dataset: string, batch: number, variant: StepVariant): Promise<StepLaunch>;
  run: RunWith;
  status(program: number): { marks: ArrayLike<number>; currentOp: number };
  /** Added to the device's startMs to put it on the coordinator's clock (performance.now()). */
  clockOffsetMs: number;
  /** Why the tower is dead, or undefined while it lives. */
  deadCause(): string | undefined;
}

// Note [Step deadline timer]: a step's deadline is one Node timer per launcher, re-armed with refresh() for each
// step (no new timer, no clearTimeout, no Promise.race). The timer rejects only the step it was armed for (a step
// number); it is ref'd while a step is pending (a hung step keeps the process alive until its deadline fires) and
// unref'd once the step settles, so an idle tower never holds the process. A step with a different deadline gets
// a new timer.

export class StepLauncher {
  // By "dataset:batch:variant"; cleared when the tower is rebuilt or joins a new group (the program names its collective).
  private readonly launches = new Map<string, StepLaunch>();
  private last: { dataset: string; batch: number; variant: StepVariant; launch: StepLaunch } | undefined;
  private current: number | undefined;
  // The hyper block, reused: runWith copies its writes before it returns (contract section 1).
  private readonly hyper = new Float32Array(HYPER_SIZE);
  private timer: NodeJS.Timeout | undefined;
  private timerMs = -1;
  private seq = 0;
  private expire: (() => void) | undefined;

  constructor(
    private readonly device: string,
    private readonly deps: LauncherDeps,
  ) {}

  reset(): void {
    this.launches.clear();
    this.last = undefined;
    this.current = undefined;
  }

  /** Stops the deadline timer (the port is closing). */
  close(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.timerMs = -1;
  }

  /** The phase of the step program running now, from its '@mark' progress; undefined when idle. */
  phase(): string | undefined {
    return this.current === undefined ? undefined : phaseOf(this.deps.status(this.current));
  }

  /**
   * One step. A worker that dies closes its device, which aborts the all-reduce and settles every queued step
   * with an error naming that device (Note [Collective executor]); a step that misses its deadline rejects with a
   * TowerError saying so (the watchdog then asks every tower for its phase).
   */
  step(q: StepRequest, deadlineMs: number, fault?: FaultSpec): Promise<StepReply> {
    const last = this.last;
    const variant = q.variant ?? 'step';
    if (last !== undefined && last.dataset === q.dataset && last.batch === q.indices.length && last.variant === variant)
      return this.launch(last.launch, q, deadlineMs, fault);
    return this.prepared(q, variant, deadlineMs, fault);
  }

  private async prepared(q: StepRequest, variant: StepVariant, deadlineMs: number, fault: FaultSpec | undefined): Promise<StepReply> {
    const key = `${q.dataset}:${q.indices.length}:${variant}`;
    let launch = this.launches.get(key);
    if (!launch) {
      launch = await this.deps.prepare(q.dataset, q.indices.length, variant);
      this.launches.set(key, launch);
    }
    this.last = { dataset: q.dataset, batch: q.indices.length, variant, launch };
    return this.launch(launch, q, deadlineMs, fault);
  }

  private launch(launch: StepLaunch, q: StepRequest, deadlineMs: number, fault: FaultSpec | undefined): Promise<StepReply> {
    const program = launch.program;
    this.current = program;
    const h = this.hyper;
    h[HyperSlot.lr] = q.lr;
    h[HyperSlot.step] = q.t;
    h[HyperSlot.gradScale] = q.gradScale;
    const writes: Writes = [[launch.indices, q.indices], [launch.hyper, h]];
    if (launch.crop !== undefined && q.crop) writes.push([launch.crop, q.crop]);
    return new Promise<StepReply>((resolve, reject) => {
      const dead = this.deps.deadCause();
      if (dead !== undefined) return reject(this.failed(dead));
      let running: Promise<RunResult>;
      try {
        running = this.deps.run(program, writes, launch.reads, fault);
      } catch (e) {
        return reject(this.failure(e));
      }
      const id = this.arm(deadlineMs, () => reject(this.failed(`no answer within ${deadlineMs} ms (deadline)`)));
      running.then(
        (r) => {
          this.disarm(id);
          const timings = stepTimings(r.marks, r.startMs);
          timings.startMs += this.deps.clockOffsetMs;
          const v = r.values;
          resolve({ loss: v[0]!, regLoss: v[1]!, gradNorm: Math.sqrt(v[2]!), timings, reduceWaitMs: r.waitMs, skipped: r.guardTripped });
        },
        (e: unknown) => {
          this.disarm(id);
          reject(this.failure(e));
        },
      );
    });
  }

  private failed(why: string): TowerError {
    return new TowerError(this.device, 'step', why);
  }

  private failure(e: unknown): TowerError {
    if (e instanceof TowerError) return e;
    const msg = e instanceof Error ? e.message : String(e);
    // A dead worker's device and programs are gone: say so rather than "no compiled program".
    const dead = this.deps.deadCause();
    return this.failed(dead === undefined ? msg : `${dead} (${msg})`);
  }

  /** Arms the deadline for a new step (Note [Step deadline timer]); returns the step's number. */
  private arm(ms: number, expire: () => void): number {
    this.expire = expire;
    if (this.timer === undefined || this.timerMs !== ms) {
      clearTimeout(this.timer);
      this.timerMs = ms;
      this.timer = setTimeout(() => this.onDeadline(), ms);
    } else {
      this.timer.refresh();
      this.timer.ref();
    }
    return ++this.seq;
  }

  private disarm(id: number): void {
    if (id !== this.seq) return; // a later step owns the timer now
    this.expire = undefined;
    this.timer?.unref();
  }

  private onDeadline(): void {
    const expire = this.expire;
    this.expire = undefined;
    this.timer?.unref();
    expire?.();
  }
}
