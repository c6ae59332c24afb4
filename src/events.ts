// What a training run tells its app: one StepEvent per step on steps$, RunEvents on events$, a summary (or the
// error) through done.
//
// Note [Run streams]: a failure is seen exactly once, through `done`, and as a 'failed' event
// on events$; then steps$ and events$ complete. The streams never error, so a subscriber without an error handler
// cannot crash the app.
import type { Observable } from 'rxjs';
import type { StepTimings } from './tower-port/protocol.js';

export type { StepTimings };

/** One tower's part of a step: per-phase ms (startMs on the process's performance.now() clock) and its wait. */
export interface TowerTimings extends StepTimings {
  device: string;
  /** Time this tower waited for the others inside the all-reduce (the synchronisation point). */
  idle: number;
}

export interface StepEvent {
  /** Steps done so far (1 after the first update). */
  step: number;
  epoch: number;
  /** The batch's mean loss (data loss plus L2 penalty). */
  loss: number;
  learningRate: number;
  /** Global norm of the reduced gradient. */
  gradientNorm?: number;
  examplesPerSec: number;
  secPerBatch: number;
  batchSize: number;
  /** Examples per tower (they sum to batchSize). */
  shardSizes: number[];
  towers: TowerTimings[];
  /** Mode 'async': the update this event reports (one event per push the server took; docs/async.md). */
  async?: AsyncUpdate;
}

/** One push the parameter server took (Note [Staleness] in src/async/gate.ts). */
export interface AsyncUpdate {
  /** The server's version after it (= step). */
  version: number;
  /** The pushing tower: its rank and label. */
  tower: number;
  device: string;
  /** Rounds its tower was ahead of the slowest when it pulled (at most maxStaleness); with several parameter
   *  servers, the largest over the servers (each bounds it with its own gate; docs/async.md). */
  staleness: number;
  /** Pushes the server took between its pull and this push. */
  lag: number;
  /** The version its gradient was computed on. */
  pulledVersion: number;
  /** Each tower's examples/sec over its last iteration, in rank order (0 once dropped). */
  towerExamplesPerSec: number[];
}

/** How the synchronous loop launches steps (Note [Pipelined steps]): `depth` steps in flight behind the one landing,
 * or 0 and `off` saying why ('pipeline: false', "'speed' shares", 'several processes'). */
export interface PipelineReport {
  depth: number;
  off?: string;
}

export type RunEvent =
  /** `layout`: how the CPU towers share the cores (Note [CPU layout]), e.g. "2 CPU towers on 2 cores: 1 GEMM thread each", or, for more towers than cores, what was asked for and what runs ("4 CPU towers asked for on 2 cores: 2 device threads, ..."); `devices` lists the towers that run. */
  | { type: 'started'; step: number; totalSteps: number; stepsPerEpoch: number; devices: string[]; layout?: string; optimizerBytes?: number[]; shardMemory?: 'copies' | 'shared weights' | 'shared weights and gradients'; pipeline?: PipelineReport } // Z: optimizerBytes, each tower's optimizer state with shardUpdate; shardMemory, what the towers share (Note [Shared weights]); O: pipeline
  | { type: 'epoch'; epoch: number; steps: number }
  | { type: 'skipped'; step: number; reason: string }
  | { type: 'checkpoint'; step: number; path: string }
  | { type: 'replicas'; step: number; consistent: boolean; differing: string[]; detail: string }
  /** Resumed from `path`: `note` says on which world, and whether the trajectory stays bit-identical. */
  | { type: 'resumed'; step: number; path: string; bitIdentical: boolean; note: string }
  | { type: 'rolledBack'; step: number; path: string; reason: string; lrScale: number }
  | { type: 'evaluation'; epoch: number; step: number; loss: number; accuracy: number; useEma: boolean }
  /** Something the app should know that does not stop the run: a skipped damaged checkpoint, a changed layout. */
  | { type: 'warning'; step: number; message: string }
  /** Mode 'async': a tower died, failed or missed its deadline; training goes on with `remaining` towers. */
  | { type: 'towerDropped'; step: number; tower: number; device: string; reason: string; remaining: number }
  /** The run failed with `error` (also the rejection of `done`); the streams complete after this event. */
  | { type: 'failed'; step: number; error: Error };

export interface RunSummary {
  steps: number;
  epochs: number;
  finalLoss: number;
  evaluation?: { loss: number; accuracy: number };
}

export interface TrainRun {
  /**
   * One event per step; several subscribers, late ones too (they get the latest step); a slow subscriber never
   * blocks training. Completes when the run ends, also when it fails (see events$ and done).
   */
  steps$: Observable<StepEvent>;
  /** Run events, then a 'failed' event if the run fails; completes when the run ends. */
  events$: Observable<RunEvent>;
  /** The summary; rejects (once) with the run's error, e.g. a NonFiniteError, WatchdogError or TowerError. */
  done: Promise<RunSummary>;
  /** Stops after the current step (and writes a checkpoint when checkpoints are on). */
  stop(): void;
}
