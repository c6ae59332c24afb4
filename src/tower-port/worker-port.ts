// A tower port over a worker thread (a device actor): control calls over comlink with deadlines; steps launched
// from this thread straight onto the tower's device thread (Note [One hand-off per step]).
import { native } from '../native/addon.js';
import type { TowerError } from '../errors.js';
import { ActorClient } from './actor-client.js';
import { BasePort } from './base-port.js';
import { StepLauncher } from './step-launcher.js';
import type { GroupEndpoint } from './port.js';
import type { ActorStart } from './protocol.js';

/** Native steady-clock ms minus performance.now(): both are monotonic, so this is fixed for the process. */
export function nativeClockOffset(): number {
  return performance.now() - native().nowMs();
}

export class WorkerTowerPort extends BasePort {
  readonly death: Promise<TowerError>;
  protected readonly launcher: StepLauncher;

  constructor(
    private readonly actor: ActorClient,
    callMs: number,
  ) {
    super(actor.label, (method, ...args) => actor.call(method, callMs, ...args));
    this.death = actor.death;
    const addon = native();
    this.launcher = new StepLauncher(actor.label, {
      prepare: (dataset, batch, variant) => actor.call('stepLaunch', callMs, dataset, batch, variant),
      run: (program, writes, reads, fault, chained) => addon.runWith(program, writes, reads, fault, chained),
      status: (program) => addon.programStatus(program),
      clockOffsetMs: nativeClockOffset(),
      deadCause: () => actor.deathCause,
    });
  }

  static open(label: string, start: ActorStart, callMs: number): WorkerTowerPort {
    return new WorkerTowerPort(new ActorClient(label, start), callMs);
  }

  endpoint(): GroupEndpoint {
    return { kind: 'native', arenas: this.builtArenas() };
  }

  hold(active: boolean): void {
    this.actor.hold(active);
  }

  close(): Promise<void> {
    this.launcher.close();
    return this.actor.close();
  }

  /** Ends the worker as a crash would (tests reach this through src/testing/faults.ts only). */
  kill(): Promise<TowerError> {
    return this.actor.kill();
  }
}
