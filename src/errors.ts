// Every error class towerline throws on purpose, each with a stable `code` an app can switch on (instanceof works
// too). Messages say what was expected, what was given, and how to fix it.

/** The base of towerline's errors: `code` is stable across versions ('TL_...'); the message is for people. */
export abstract class TowerlineError extends Error {
  abstract readonly code: string;
}

/** Bad options, model spec, device list or settings: `field` is the dotted path of the bad value. */
export class ConfigError extends TowerlineError {
  readonly code = 'TL_CONFIG';
  constructor(
    message: string,
    readonly field?: string,
  ) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** A data file or data set that cannot be read as expected: `source` names the file or set. */
export class DataError extends TowerlineError {
  readonly code = 'TL_DATA';
  constructor(
    readonly source: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`${source}: ${message}`, options);
    this.name = 'DataError';
  }
}

/** A checkpoint that is missing, incomplete, corrupted or from other settings: `source` names the file. */
export class CheckpointError extends TowerlineError {
  readonly code = 'TL_CHECKPOINT';
  constructor(
    readonly source: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`${source}: ${message}`, options);
    this.name = 'CheckpointError';
  }
}

/** A reduction schedule that would not produce bit-identical sums on every tower (Note [Schedules]). */
export class ScheduleError extends TowerlineError {
  readonly code = 'TL_SCHEDULE';
  constructor(message: string) {
    super(message);
    this.name = 'ScheduleError';
  }
}

/** A failure of one tower: names the device, the call and the cause (a kernel error, a dead worker, a deadline). */
export class TowerError extends TowerlineError {
  readonly code = 'TL_TOWER';
  constructor(
    readonly device: string,
    readonly call: string,
    readonly causeText: string,
  ) {
    super(`tower on ${device}: ${call} failed: ${causeText}`);
    this.name = 'TowerError';
  }
}

/** The non-finite guard halted training: the message names the step, the tower(s) and the first tensor. */
export class NonFiniteError extends TowerlineError {
  readonly code = 'TL_NON_FINITE';
  constructor(message: string) {
    super(message);
    this.name = 'NonFiniteError';
  }
}

/** The replica check found towers whose weights differ (silent corruption). */
export class ReplicaMismatchError extends TowerlineError {
  readonly code = 'TL_REPLICA_MISMATCH';
  constructor(message: string) {
    super(message);
    this.name = 'ReplicaMismatchError';
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
    this.name = 'WatchdogError';
  }
}
