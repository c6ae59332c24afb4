// A tower port in this thread: a TowerHost on a Backend driven by direct calls, stepped through the same
// StepLauncher as a worker's tower. Over the float64 ReferenceBackend it needs neither worker threads nor native
// devices (the coordinator's tests); over a NativeDevice it is a whole tower without a worker.
import { TowerError } from '../errors.js';
import type { Backend } from '../backend/backend.js';
import { ReferenceBackend } from '../reference/reference-backend.js';
import { BasePort, type Invoke } from './base-port.js';
import { StepLauncher, type RunWith } from './step-launcher.js';
import { TowerHost } from './tower-host.js';
import { nativeClockOffset } from './worker-port.js';
import type { GroupEndpoint } from './port.js';

/** A backend that runs whole steps (contract section 1's runWith) and reports a program's progress. */
type SteppingBackend = Backend & { runWith: RunWith; status: NonNullable<Backend['status']> };

function stepping(backend: Backend): SteppingBackend {
  if (!backend.runWith || !backend.status) throw new Error(`backend ${backend.name} cannot run training steps (no runWith/status)`);
  return backend as SteppingBackend;
}

export class InProcessTowerPort extends BasePort {
  /** An in-process tower dies only with its process. */
  readonly death = new Promise<TowerError>(() => undefined);
  protected readonly launcher: StepLauncher;
  private closed = false;

  constructor(private readonly backend: Backend) {
    const host = new TowerHost(backend);
    const invoke: Invoke = async (method, ...args) => {
      try {
        return await (host[method] as (...a: unknown[]) => Promise<never>)(...args);
      } catch (e) {
        throw new TowerError(backend.name, method, e instanceof Error ? e.message : String(e));
      }
    };
    super(backend.name, invoke);
    const b = stepping(backend);
    this.launcher = new StepLauncher(backend.name, {
      prepare: (dataset, batch, variant) => host.stepLaunch(dataset, batch, variant),
      run: (program, writes, reads, fault, chained) => b.runWith(program, writes, reads, fault, chained),
      status: (program) => b.status(program),
      clockOffsetMs: backend instanceof ReferenceBackend ? 0 : nativeClockOffset(),
      deadCause: () => (this.closed ? 'closed' : undefined),
    });
  }

  endpoint(): GroupEndpoint {
    const arenas = this.builtArenas();
    return this.backend instanceof ReferenceBackend ? { kind: 'reference', backend: this.backend, arenas } : { kind: 'native', arenas };
  }

  hold(): void {
    // Nothing to hold: the caller's own work keeps the process alive.
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.launcher.close();
    await this.invoke('dispose').catch(() => undefined);
  }
}
