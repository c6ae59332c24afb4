// The one step path (Note [One hand-off per step]): every training step of every port, faults included, goes
// through StepLauncher.step: the cached launch handles of the tower's compiled step program, the hyper block, one
// runWith to the device thread and back, the deadline, and the decoding of the reply.
import { TowerError } from '../errors.js';
import { HYPER_SIZE, hyperBlock } from '../native/hyper.js';
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

/** runWith of contract section 1: writes, the program, reads, one fault armed for this run only, and whether the run is
 * chained behind an unconsumed step (Note [Pipelined steps] in src/coordinator/pipeline.ts). */
export type RunWith = (program: number, writes: Writes, reads: number[], fault?: FaultSpec, chained?: boolean) => Promise<RunResult & { cancelled?: boolean }>;

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

// Note [Step deadline timer]: a step's deadline is one Node timer per launcher that is not touched per step (no
// new timer, no refresh(), no clearTimeout, no Promise.race): each pending step records when its deadline started
// (`since`), and the timer, armed for a whole deadline when it last started, checks the oldest pending step when it
// fires: past its deadline, the step is rejected; else the timer is set again for what is left of it. The oldest
// step's deadline started no earlier than the timer did, so the timer never fires after it (steps of one launcher
// with a different deadline restart the timer). The deadline runs for the launcher's oldest unsettled step only: a
// step queued behind another (Note [Pipelined steps]) gets its deadline when the one before it settles, so each
// deadline covers its own run, not the wait behind its predecessor. The timer is ref'd while a step is pending (a
// hung step keeps the process alive until its deadline fires) and unref'd once none is, so an idle tower never holds
// the process; an unref'd timer that fires with nothing pending is not set again. A missed deadline rejects that
// step and every step queued behind it (they cannot start before it ends).

/** A step launched and not yet settled, oldest first. */
interface Pending {
  program: number;
  deadlineMs: number;
  /** When its deadline started (performance.now()): when it became the oldest pending step. */
  since: number;
  reject(e: TowerError): void;
}

export class StepLauncher {
  // By "dataset:batch:variant"; cleared when the tower is rebuilt or joins a new group (the program names its collective).
  private readonly launches = new Map<string, StepLaunch>();
  private last: { dataset: string; batch: number; variant: StepVariant; launch: StepLaunch } | undefined;
  // The program of the oldest unsettled step (the watchdog's phase), kept after it settles until the next one.
  private current: number | undefined;
  // The hyper block and the writes list, reused: runWith copies its writes before it returns (contract section 1).
  private readonly hyper = new Float32Array(HYPER_SIZE);
  private readonly writes: Writes = [];
  private readonly pending: Pending[] = [];
  // A step waiting for its launch handles: steps called after it wait too, so runs reach the device in call order.
  private preparing: Promise<StepLaunch> | undefined;
  private timer: NodeJS.Timeout | undefined;
  // The deadline the timer is set for (-1: none), and whether it is set (it stops when it fires with nothing pending).
  private timerMs = -1;
  private timerSet = false;

  constructor(
    private readonly device: string,
    private readonly deps: LauncherDeps,
  ) {}

  reset(): void {
    this.preparing = undefined;
    this.launches.clear();
    this.last = undefined;
    this.current = undefined;
  }

  /** Stops the deadline timer (the port is closing). */
  close(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.timerMs = -1;
    this.timerSet = false;
  }

  /** The phase of the step program running now, from its '@mark' progress; undefined when idle. */
  phase(): string | undefined {
    return this.current === undefined ? undefined : phaseOf(this.deps.status(this.current));
  }

  /**
   * One step. A worker that dies closes its device, which aborts the all-reduce and settles every queued step
   * with an error naming that device (Note [Collective executor]); a step that misses its deadline rejects with a
   * TowerError saying so (the watchdog then asks every tower for its phase). `chained`: launched while an earlier
   * step's reply is unconsumed; the device cancels it (reply.cancelled) if that step tripped its guard or failed.
   */
  step(q: StepRequest, deadlineMs: number, fault?: FaultSpec, chained = false): Promise<StepReply> {
    const last = this.last;
    const variant = q.variant ?? 'step';
    if (this.preparing === undefined && last !== undefined && last.dataset === q.dataset && last.batch === q.indices.length && last.variant === variant)
      return this.launch(last.launch, q, deadlineMs, fault, chained);
    return this.prepared(q, variant, deadlineMs, fault, chained);
  }

  /** Launches after the step's launch handles are known, and after every step called before it (call order). */
  private async prepared(q: StepRequest, variant: StepVariant, deadlineMs: number, fault: FaultSpec | undefined, chained: boolean): Promise<StepReply> {
    const key = `${q.dataset}:${q.indices.length}:${variant}`;
    const before = this.preparing;
    const ready = (async () => {
      await before?.catch(() => undefined);
      let launch = this.launches.get(key);
      if (!launch) {
        launch = await this.deps.prepare(q.dataset, q.indices.length, variant);
        this.launches.set(key, launch);
      }
      this.last = { dataset: q.dataset, batch: q.indices.length, variant, launch };
      return launch;
    })();
    this.preparing = ready;
    try {
      return this.launch(await ready, q, deadlineMs, fault, chained);
    } finally {
      if (this.preparing === ready) this.preparing = undefined;
    }
  }

  private launch(launch: StepLaunch, q: StepRequest, deadlineMs: number, fault: FaultSpec | undefined, chained: boolean): Promise<StepReply> {
    const program = launch.program;
    const w = this.writes;
    w.length = 0;
    w.push([launch.indices, q.indices], [launch.hyper, hyperBlock(q.lr, q.t, q.gradScale, this.hyper)]);
    if (launch.crop !== undefined && q.crop) w.push([launch.crop, q.crop]);
    return new Promise<StepReply>((resolve, reject) => {
      const dead = this.deps.deadCause();
      if (dead !== undefined) return reject(this.failed(dead));
      let running: Promise<RunResult & { cancelled?: boolean }>;
      try {
        running = this.deps.run(program, w, launch.reads, fault, chained);
      } catch (e) {
        return reject(this.failure(e));
      }
      const p: Pending = { program, deadlineMs, since: 0, reject };
      if (this.pending.push(p) === 1) this.arm(p);
      running.then(
        (r) => {
          if (!this.settled(p)) return; // rejected at a deadline already
          if (r.cancelled) return resolve(cancelledReply);
          const timings = stepTimings(r.marks, r.startMs);
          timings.startMs += this.deps.clockOffsetMs;
          const v = r.values;
          resolve({ loss: v[0]!, regLoss: v[1]!, gradNorm: Math.sqrt(v[2]!), timings, reduceWaitMs: r.waitMs, skipped: r.guardTripped });
        },
        (e: unknown) => {
          if (this.settled(p)) reject(this.failure(e));
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

  /** Starts the deadline of the oldest pending step (Note [Step deadline timer]). */
  private arm(p: Pending): void {
    this.current = p.program;
    p.since = performance.now();
    if (this.timerSet && this.timerMs === p.deadlineMs) {
      this.timer!.ref(); // already set, at most one deadline ago: it fires no later than p's deadline
      return;
    }
    this.setTimer(p.deadlineMs);
  }

  private setTimer(ms: number, deadlineMs = ms): void {
    clearTimeout(this.timer);
    this.timerMs = deadlineMs;
    this.timerSet = true;
    this.timer = setTimeout(() => this.onTimer(), ms);
  }

  /** `p` settled: false if it was already rejected (a deadline); else its successor's deadline starts. */
  private settled(p: Pending): boolean {
    const i = this.pending.indexOf(p);
    if (i < 0) return false;
    if (i === 0) this.pending.shift();
    else this.pending.splice(i, 1);
    if (i > 0) return true; // settled out of order (an error): the oldest keeps its deadline
    const next = this.pending[0];
    if (next) this.arm(next);
    else this.timer?.unref();
    return true;
  }

  /** The timer fired: the oldest pending step missed its deadline, or the timer is set for what is left of it. */
  private onTimer(): void {
    this.timerSet = false;
    const oldest = this.pending[0];
    if (!oldest) return; // nothing pending: the timer stops (the next step sets it)
    const left = oldest.since + oldest.deadlineMs - performance.now();
    if (left > 0) return this.setTimer(Math.ceil(left), oldest.deadlineMs);
    const [late, ...behind] = this.pending.splice(0);
    this.timer?.unref();
    late!.reject(this.failed(`no answer within ${late!.deadlineMs} ms (deadline)`));
    for (const b of behind) b.reject(this.failed('not run: the step before it missed its deadline'));
  }
}

/** The reply of a chained step the device did not run (Note [Pipelined steps]). */
const cancelledReply: StepReply = Object.freeze({
  loss: NaN,
  regLoss: NaN,
  gradNorm: NaN,
  timings: Object.freeze(stepTimings([], 0)),
  reduceWaitMs: 0,
  skipped: false,
  cancelled: true,
}) as StepReply;
