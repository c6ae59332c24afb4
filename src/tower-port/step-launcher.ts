// The one step path (Note [One hand-off per step]): every training step of every port, faults included, goes
// through StepLauncher.step: the cached launch handles of the tower's compiled step program, the hyper block, one
// runWith to the device thread and back, the deadline, and the decoding of the reply.
import { TowerError } from '../errors.js';
import { hyperBlock } from '../native/hyper.js';
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

export class StepLauncher {
  // By "dataset:batch:variant"; cleared when the tower is rebuilt or joins a new group (the program names its collective).
  private readonly launches = new Map<string, StepLaunch>();
  private current: number | undefined;

  constructor(
    private readonly device: string,
    private readonly deps: LauncherDeps,
  ) {}

  reset(): void {
    this.launches.clear();
    this.current = undefined;
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
  async step(q: StepRequest, deadlineMs: number, fault?: FaultSpec): Promise<StepReply> {
    const variant = q.variant ?? 'step';
    const key = `${q.dataset}:${q.indices.length}:${variant}`;
    let launch = this.launches.get(key);
    if (!launch) {
      launch = await this.deps.prepare(q.dataset, q.indices.length, variant);
      this.launches.set(key, launch);
    }
    const program = launch.program;
    this.current = program;
    const writes: Writes = [[launch.indices, q.indices], [launch.hyper, hyperBlock(q.lr, q.t, q.gradScale)]];
    if (launch.crop !== undefined && q.crop) writes.push([launch.crop, q.crop]);
    const reads = launch.reads;
    let timer: NodeJS.Timeout | undefined;
    const failed = (why: string) => new TowerError(this.device, 'step', why);
    try {
      const launched = (async () => {
        const dead = this.deps.deadCause();
        if (dead !== undefined) throw failed(dead);
        return this.deps.run(program, writes, reads, fault);
      })().catch((e: unknown) => {
        if (e instanceof TowerError) throw e;
        const msg = e instanceof Error ? e.message : String(e);
        // A dead worker's device and programs are gone: say so rather than "no compiled program".
        const dead = this.deps.deadCause();
        throw failed(dead === undefined ? msg : `${dead} (${msg})`);
      });
      const r = await Promise.race([
        launched,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(failed(`no answer within ${deadlineMs} ms (deadline)`)), deadlineMs);
        }),
      ]);
      const timings = stepTimings(r.marks, r.startMs);
      timings.startMs += this.deps.clockOffsetMs;
      return { loss: r.values[0]!, regLoss: r.values[1]!, gradNorm: Math.sqrt(r.values[2]!), timings, reduceWaitMs: r.waitMs, skipped: r.guardTripped };
    } finally {
      clearTimeout(timer);
    }
  }
}
