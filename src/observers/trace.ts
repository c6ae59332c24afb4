// The timeline observer: a Chrome trace-event file with one track per tower, so parallel work and waits show.
import { TraceWriter } from '../io/trace.js';
import type { TowerTimings } from '../events.js';
import type { RunObserver, RunStreams } from './observer.js';

/**
 * Track 0 is the coordinator (the whole step); track r+1 is tower r: input, forward, backward, reduce (with the
 * time spent waiting for the other towers in its args) and update, placed on the shared clock, then idle until
 * the step ends (the synchronous update waits for the slowest tower: seed 002's question).
 */
export function traceStep(trace: TraceWriter, step: number, stepStartMs: number, stepEndMs: number, towers: TowerTimings[]): void {
  trace.span(0, `step ${step}`, stepStartMs, stepEndMs - stepStartMs, { step });
  towers.forEach((t, r) => {
    let at = t.startMs;
    const phases: Array<[string, number]> = [['input', t.input], ['forward', t.forward], ['backward', t.backward], ['reduce', t.reduce], ['update', t.update]];
    for (const [name, dur] of phases) {
      trace.span(r + 1, name, at, dur, name === 'reduce' ? { step, waitMs: t.idle } : { step });
      at += dur;
    }
    if (stepEndMs > at) trace.span(r + 1, 'idle', at, stepEndMs - at, { step });
  });
}

export function traceObserver(path: string, devices: string[], streams: RunStreams): RunObserver {
  const trace = new TraceWriter(path);
  const clock0 = performance.now();
  trace.track(0, 'coordinator');
  devices.forEach((d, r) => trace.track(r + 1, `tower ${r} (${d})`));
  const sub = streams.records$.subscribe(({ event, startMs, endMs }) =>
    traceStep(trace, event.step, startMs - clock0, endMs - clock0, event.towers.map((t) => ({ ...t, startMs: t.startMs - clock0 }))),
  );
  return {
    close: () => {
      sub.unsubscribe();
      return trace.close();
    },
  };
}
