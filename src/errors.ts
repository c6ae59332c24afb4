// Every error class towerline throws on purpose, each with a stable `code` an app can switch on (instanceof works
// too). Messages say what was expected, what was given, and how to fix it.

/** The base of towerline's errors: `code` is stable across versions ('TL_...'); the message is for people. */
export abstract class TowerlineError extends Error {
  abstract readonly code: string;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** An error about one file or data source: `source` names it, and the message starts with it. */
abstract class SourceError extends TowerlineError {
  constructor(
    readonly source: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`${source}: ${message}`, options);
  }
}

/** Bad options, model spec, device list or settings: `field` is the dotted path of the bad value. */
export class ConfigError extends TowerlineError {
  readonly code = 'TL_CONFIG';
  constructor(
    message: string,
    readonly field?: string,
  ) {
    super(message);
  }
}

/** A data file or data set that cannot be read as expected: `source` names the file or set. */
export class DataError extends SourceError {
  readonly code = 'TL_DATA';
}

/** A checkpoint that is missing, incomplete or corrupted: `source` names the file. */
export class CheckpointError extends SourceError {
  readonly code = 'TL_CHECKPOINT';
}

/** A reduction schedule that would not produce bit-identical sums on every tower (Note [Schedules]). */
export class ScheduleError extends TowerlineError {
  readonly code = 'TL_SCHEDULE';
}

/** A failure of one tower: names the device, the call and the cause (a kernel error, a dead worker, a deadline). */
export class TowerError extends TowerlineError {
  readonly code = 'TL_TOWER';
  constructor(
    readonly device: string,
    readonly call: string,
    readonly causeText: string,
    /** Who failed, as the message names it: a tower on `device`, unless another role is given (a parameter server). */
    who = `tower on ${device}`,
  ) {
    super(`${who}: ${call} failed: ${causeText}`);
  }
}

/** The non-finite guard halted training at `step`: the message names the tower(s) and the first tensor. */
export class NonFiniteError extends TowerlineError {
  readonly code = 'TL_NON_FINITE';
  constructor(
    message: string,
    readonly step: number,
  ) {
    super(message);
  }
}

/** The replica check at `step` found `devices` whose weights differ from tower 0's (silent corruption). */
export class ReplicaMismatchError extends TowerlineError {
  readonly code = 'TL_REPLICA_MISMATCH';
  constructor(
    message: string,
    readonly step: number,
    readonly devices: string[],
  ) {
    super(message);
  }
}

/** The watchdog fired: `devices` are the towers that did not reach the all-reduce, `phase` where they were. */
export class WatchdogError extends TowerlineError {
  readonly code = 'TL_WATCHDOG';
  constructor(
    message: string,
    readonly devices: string[],
    readonly phase: string | undefined,
  ) {
    super(message);
  }
}

/** The runtime was closed (rt.close()) while this run or call was in flight. */
export class RuntimeClosedError extends TowerlineError {
  readonly code = 'TL_CLOSED';
}

/** A run trained but could not keep one of its outputs (a TensorBoard file, the trace): never reported as success. */
export class OutputError extends TowerlineError {
  readonly code = 'TL_OUTPUT';
}
