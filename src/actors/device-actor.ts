// The coordinator's handle on one device actor: comlink calls with deadlines, and rejection of every pending call
// with the device and the cause when the worker dies.
import { Worker } from 'node:worker_threads';
import * as Comlink from 'comlink';
import nodeEndpoint from 'comlink/dist/esm/node-adapter.mjs';
import type { ActorStart, TowerActorApi } from './protocol.js';

/** A failure of one tower: names the device, the call and the cause. */
export class TowerError extends Error {
  constructor(
    readonly device: string,
    readonly call: string,
    readonly causeText: string,
  ) {
    super(`tower on ${device}: ${call} failed: ${causeText}`);
    this.name = 'TowerError';
  }
}

type Pending = { reject: (e: Error) => void; call: string };

export class DeviceActor {
  private readonly worker: Worker;
  private readonly api: Comlink.Remote<TowerActorApi>;
  private readonly pending = new Set<Pending>();
  private deadReason: string | undefined;
  readonly exited: Promise<number>;

  constructor(
    readonly label: string,
    start: ActorStart,
  ) {
    const entry = new URL(import.meta.url.endsWith('.ts') ? './tower-worker.ts' : './tower-worker.js', import.meta.url).href;
    // A plain .mjs bootstrap registers the TypeScript loader inside the worker when running from sources.
    this.worker = new Worker(new URL('./worker-entry.mjs', import.meta.url), { workerData: { ...start, entry } });
    this.api = Comlink.wrap<TowerActorApi>(nodeEndpoint(this.worker));
    this.exited = new Promise((resolve) => {
      this.worker.on('error', (e) => this.die(`worker error: ${e.message}`));
      this.worker.on('exit', (code) => {
        this.die(`worker exited with code ${code}`);
        resolve(code);
      });
    });
  }

  get alive(): boolean {
    return this.deadReason === undefined;
  }

  /** Why the worker is dead (its exit code or error), or undefined while it lives. */
  get deathCause(): string | undefined {
    return this.deadReason;
  }

  private die(reason: string): void {
    if (this.deadReason === undefined) this.deadReason = reason;
    for (const p of this.pending) p.reject(new TowerError(this.label, p.call, reason));
    this.pending.clear();
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

  /** Asks the actor to free its device, then ends the worker; always returns (bounded by `timeoutMs`). */
  async close(timeoutMs = 5000): Promise<void> {
    if (this.alive) {
      try {
        await this.call('dispose', timeoutMs);
      } catch {
        // Closing must not fail because the actor is already broken.
      }
    }
    this.api[Comlink.releaseProxy]();
    await Promise.race([this.worker.terminate(), new Promise((r) => setTimeout(r, timeoutMs))]);
    this.die('closed');
  }

  /** Test hook: ends the worker abruptly, as a crash would. */
  kill(): Promise<number> {
    void this.worker.terminate();
    return this.exited;
  }
}
