// How towers are connected: a group owns the collectives its towers run (the gradient all-reduce inside each step,
// the weight broadcast at start-up). Today a local group over the towers of this process; process groups (towers
// in other processes, issue 14) plug in behind the same interface.
import type { Schedule } from '../scheduler/schedule.js';
import type { TowerPort } from '../tower-port/port.js';

export interface TowerGroup {
  readonly size: number;
  /** Installs a new all-reduce schedule (validated by the caller); only between steps, never under a collective. */
  setSchedule(schedule: Schedule): void;
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
}

/** Connects built towers into a group and tells each its place (TowerPort.joinGroup). */
export type ConnectGroup = (ports: TowerPort[], opts: GroupOptions) => Promise<TowerGroup>;
