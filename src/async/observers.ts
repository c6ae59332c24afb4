// What observes an asynchronous run: staleness and lag in TensorBoard (a histogram every N updates, scalars per
// update), and a timeline where each tower's track shows its own pulls, computation and pushes, the staleness
// gate's waits, and the server's track every apply: the towers no longer wait for each other.
import { EventWriter } from '../io/tfevents.js';
import { TraceWriter } from '../io/trace.js';
import type { RunObserver, RunStreams } from '../observers/observer.js';

/** Histograms 'async/staleness' and 'async/lag' of the updates since the last ones, every `every` updates. */
export async function stalenessObserver(logDir: string, streams: RunStreams, every: number): Promise<RunObserver> {
  const tb = await EventWriter.open(logDir, { filenameSuffix: '.async' });
  let staleness: number[] = [];
  let lag: number[] = [];
  const flush = (step: number) => {
    if (staleness.length === 0) return;
    tb.histogram('async/staleness', Float32Array.from(staleness), step, { buckets: 16 });
    tb.histogram('async/lag', Float32Array.from(lag), step, { buckets: 16 });
    staleness = [];
    lag = [];
  };
  let last = 0;
  const sub = streams.records$.subscribe(({ event }) => {
    const a = event.async;
    if (!a) return;
    staleness.push(a.staleness);
    lag.push(a.lag);
    tb.scalar('async/staleness', a.staleness, a.version);
    tb.scalar('async/lag', a.lag, a.version);
    last = a.version;
    if (staleness.length >= every) flush(a.version);
  });
  return {
    close: async () => {
      sub.unsubscribe();
      flush(last);
      await tb.close();
    },
  };
}

/**
 * Track 0 is the parameter server (one 'apply' span per push, naming its tower); track r+1 is tower r: 'wait'
 * (held by the staleness gate), 'pull', its program's phases (input, forward, backward), 'push' (until the server
 * took it).
 */
export function asyncTraceObserver(path: string, devices: string[], streams: RunStreams): RunObserver {
  const trace = new TraceWriter(path);
  const t0 = performance.now();
  trace.track(0, 'parameter server');
  devices.forEach((d, r) => trace.track(r + 1, `tower ${r} (${d})`));
  const span = (tid: number, name: string, [a, b]: [number, number], args: Record<string, unknown>) => {
    if (b > a) trace.span(tid, name, a - t0, b - a, args);
  };
  const sub = streams.records$.subscribe(({ event, async: s }) => {
    const a = event.async;
    const tw = event.towers[0];
    if (!a || !s || !tw) return;
    const tid = s.tower + 1;
    const args = { version: a.version, staleness: a.staleness, lag: a.lag };
    span(tid, 'wait', s.wait, args);
    span(tid, 'pull', s.pull, args);
    let at = tw.startMs;
    for (const [name, ms] of [['input', tw.input], ['forward', tw.forward], ['backward', tw.backward]] as const) {
      span(tid, name, [at, at + ms], args);
      at += ms;
    }
    span(tid, 'push', s.push, args);
    span(0, `apply (tower ${s.tower})`, s.apply, args);
  });
  return {
    close: () => {
      sub.unsubscribe();
      return trace.close();
    },
  };
}
