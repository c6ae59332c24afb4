// How a run's streams reach their subscribers: asynchronously, in emission order across steps$ and events$, never
// inside the call that emitted (Note [Run stream delivery]).
import { Observable, type MonoTypeOperatorFunction, type Subscriber } from 'rxjs';

// Note [Run stream delivery]: a run's steps$ and events$ deliver what the train loop emits in a later microtask,
// as `observeOn(asapScheduler)` did: a subscriber never runs inside the loop's next() (it may call stop(), read
// state or throw without re-entering the loop), values and completions arrive in the order they were emitted across
// both streams (one queue per run), and whatever is emitted while a delivery runs goes out in the next microtask.
// What it does not do is allocate a scheduler action, an Immediate handle and a subscription per value: each value
// is three slots in one array, and a microtask is queued once per batch of emissions, not per value. The streams
// never error (Note [Run streams]), but an error is queued like the rest. Delivery to a subscriber that has
// unsubscribed meanwhile is dropped (rxjs does it: a closed subscriber ignores next).
const RESOLVED = Promise.resolve();

export class RunDelivery {
  /** (subscriber, kind: 0 next, 1 error, 2 complete, value) triples, in emission order. */
  private queue: unknown[] = [];
  private scheduled = false;

  /** The operator: `source` delivered through this run's queue. */
  deliver<T>(): MonoTypeOperatorFunction<T> {
    return (source) =>
      new Observable<T>((subscriber) =>
        source.subscribe({
          next: (v) => this.push(subscriber, 0, v),
          error: (e: unknown) => this.push(subscriber, 1, e),
          complete: () => this.push(subscriber, 2, undefined),
        }),
      );
  }

  private push(s: Subscriber<unknown>, kind: number, value: unknown): void {
    this.queue.push(s, kind, value);
    if (this.scheduled) return;
    this.scheduled = true;
    void RESOLVED.then(this.flush); // a microtask; Node's queueMicrotask also makes an async resource per call
  }

  private readonly flush = (): void => {
    const q = this.queue;
    this.queue = [];
    this.scheduled = false;
    for (let i = 0; i < q.length; i += 3) {
      const s = q[i] as Subscriber<unknown>;
      const kind = q[i + 1];
      if (kind === 0) s.next(q[i + 2]);
      else if (kind === 1) s.error(q[i + 2]);
      else s.complete();
    }
  };
}
