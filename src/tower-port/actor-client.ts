// The coordinator's end of one device actor (a worker thread): starting it, comlink calls with deadlines, rejection
// of every pending call with the device and the cause when the worker dies, and the worker's hold on the process.
import { Worker } from 'node:worker_threads';
import * as Comlink from 'comlink';
import nodeEndpoint from 'comlink/dist/esm/node-adapter.mjs';
import { TowerError } from '../errors.js';
import type { ActorStart, TowerActorApi } from './protocol.js';

/**
 * The one place that knows how a worker finds its code: compiled JavaScript next to this file when the package runs
 * from its build output (no loader needed), else the TypeScript sources with tsx registered inside the worker first
 * (the repository's tests, examples and benchmarks).
 */
function startActor(start: ActorStart): Worker {
  if (!import.meta.url.endsWith('.ts')) return new Worker(new URL('../actors/tower-actor.js', import.meta.url), { workerData: start });
  const tsx = import.meta.resolve('tsx/esm/api');
  const entry = new URL('../actors/tower-actor.ts', import.meta.url).href;
  const boot = `import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(entry)}); });`;
  return new Worker(boot, { eval: true, workerData: start });
}

// Note [Process lifetime]: an app's process must be able to exit whenever towerline has nothing to do. Worker
// threads are unref'd from the start (like a pool that allows exit when idle); a control call in flight keeps the
// process alive through its deadline timer, a running train() through TowerPort.hold(true) (ref'd workers) until
// the run settles. close() terminates the workers and clears every timer it set, so the process can exit at once.

type Pending = { reject: (e: Error) => void; call: string };

export class ActorClient {
  private readonly worker: Worker;
  private readonly api: Comlink.Remote<TowerActorApi>;
  private readonly pending = new Set<Pending>();
  private deadReason: string | undefined;
  /** Settles with the cause when the worker exits or fails (also after close()). */
  readonly death: Promise<TowerError>;

  constructor(
    readonly label: string,
    start: ActorStart,
  ) {
    this.worker = startActor(start);
    this.api = Comlink.wrap<TowerActorApi>(nodeEndpoint(this.worker));
    this.death = new Promise((resolve) => {
      this.worker.on('error', (e) => resolve(this.die(`worker error: ${e.message}`)));
      this.worker.on('exit', (code) => resolve(this.die(`worker exited with code ${code}`)));
    });
    // After the listeners (attaching a 'message' listener refs the worker's port again): Note [Process lifetime].
    this.worker.unref();
  }

  /** Why the worker is dead (its exit code or error), or undefined while it lives. */
  get deathCause(): string | undefined {
    return this.deadReason;
  }

  private die(reason: string): TowerError {
    if (this.deadReason === undefined) this.deadReason = reason;
    for (const p of this.pending) p.reject(new TowerError(this.label, p.call, this.deadReason));
    this.pending.clear();
    return new TowerError(this.label, 'worker', this.deadReason);
  }

  /** While held, the worker keeps the process alive (a running train()). */
  hold(active: boolean): void {
    if (active) this.worker.ref();
    else this.worker.unref();
  }

  /** Calls `method` on the actor; rejects after `timeoutMs`, or at once if the worker is or becomes dead. */
  call<K extends keyof TowerActorApi>(method: K, timeoutMs: number, ...args: Parameters<TowerActorApi[K]>): Promise<Awaited<ReturnType<TowerActorApi[K]>>> {
    if (this.deadReason !== undefined) return Promise.reject(new TowerError(this.label, method, this.deadReason));
    return new Promise((resolve, reject) => {
      const entry: Pending = { reject, call: method };
      const timer = setTimeout(() => {
        this.pending.delete(entry);
        reject(new TowerError(this.label, method, `no answer within ${timeoutMs} ms (deadline)`));
      }, timeoutMs);
      this.pending.add(entry);
      const fn = this.api[method] as unknown as (...a: unknown[]) => Promise<Awaited<ReturnType<TowerActorApi[K]>>>;
      fn(...args).then(
        (v) => {
          clearTimeout(timer);
          if (this.pending.delete(entry)) resolve(v);
        },
        (e: unknown) => {
          clearTimeout(timer);
          if (this.pending.delete(entry)) reject(new TowerError(this.label, method, e instanceof Error ? e.message : String(e)));
        },
      );
    });
  }

  /** Asks the actor to free its device, then ends the worker; always returns (bounded by `timeoutMs`), no timer left. */
  async close(timeoutMs = 5000): Promise<void> {
    if (this.deadReason === undefined) {
      try {
        await this.call('dispose', timeoutMs);
      } catch {
        // Closing must not fail because the actor is already broken.
      }
    }
    this.api[Comlink.releaseProxy]();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.worker.terminate(), new Promise((r) => (timer = setTimeout(r, timeoutMs)))]);
    clearTimeout(timer);
    this.die('closed');
  }

  /** Ends the worker abruptly, as a crash would (tests, through src/testing/faults.ts). */
  kill(): Promise<TowerError> {
    void this.worker.terminate();
    return this.death;
  }
}
