// MNIST training through the real runtime (createRuntime + train, device actors on worker_threads) on 1, 2 and 4
// CPU towers at global batch 128: examples/sec, and the runtime's own per-step overhead.
//
// Threads are not pinned (the default, Note [Thread placement]); a 1-tower run with layout.pin true (its device
// thread and GEMM worker pinned, the coordinator on the worker's CPU) is interleaved with the others, so what
// placement changes is measured in the same run.
//
// Steps are pipelined (the default; Note [Pipelined steps]): steps t+1 and t+2 are queued on every device thread
// while step t runs, so a step's wall time is counted from when the step before it landed, not from its own launch.
//
// Definitions, per step (from the steps$ event):
//   wall      = StepEvent.secPerBatch: the coordinator's time from the later of the step's launch and the previous
//               step's landing to having every reply (with pipelining: the interval between two landed steps).
//   tower(i)  = towers[i].total: tower i's step program on its device thread, from its start to its last mark
//               (input + forward + backward + all-reduce incl. barrier waits + update).
//   overhead  = wall - max_i tower(i): time on the critical path spent outside every device program, i.e. the
//               runtime's own cost: the coordinator's work, the hand-off to each device thread and back
//               (runWith: inputs in, scalars and timings out), thread wake-ups, the promise settling, and the
//               skew between the towers' start times that the barrier does not absorb.
//   busy(i)   = tower(i) - idle(i), idle = the tower's barrier waits in the all-reduce (reduceWaitMs).
//   gap       = max_i (startMs_i(t) - (startMs_i(t-1) + tower_i(t-1))): how long the device threads sat between two
//               step programs (the slowest to go on); pipelining queues step t before step t-1 ends, so its median
//               is the hand-off inside the device thread (the reply's wake-up of the JS thread, the next run's
//               inputs), not a JS round trip; its mean also counts the steps where a device ran dry (a drain for a
//               replica check, a JS thread woken late, a device thread preempted).
//   start skew = max_i startMs(i) - min_i startMs(i): how far apart the towers' programs began (process-wide
//               clock); the early towers spend it waiting at the all-reduce's first barrier.
//   overhead incl. skew = wall - max_i busy(i): also counts the towers' start skew, which the first barrier turns
//               into idle time inside the towers' programs (so the definition above cannot see it).
// examples/sec: the median over measured steps of batch / wall (StepEvent.examplesPerSec), and, as a check,
// measured steps * batch / (arrival time of the last measured event - arrival time of the last warm-up event),
// which also counts the coordinator's work between steps.
// JS thread CPU per step = the CPU time of the thread that runs the coordinator (this process's main thread, from
//   /proc/thread-self/schedstat, Linux only) over the measured steps / measured steps: the train loop, the step
//   launcher, the replies' decoding, the step events and their delivery, the wake-ups. Not part of the overhead
//   above; it is what the JS thread takes from the device threads' cores (2 cores, 2 GEMM threads: every microsecond
//   of it runs on a core a device thread or GEMM worker wanted).
// overhead over the run = that elapsed time / measured steps - the mean over measured steps of the slowest tower's
//   device time: the per-step overhead with nothing taken from the median (every gap, every outlier counted).
//   With pipelining a tower may start step t+1 while another still finishes step t, so with several towers the
//   slowest tower's program (its barrier waits included) can outlast the interval between two steps and this
//   figure can go below zero; "over run vs busy" (elapsed / steps - mean slowest busy time, barrier waits left
//   out) is then the conservative figure: it charges the runtime with every moment the busiest tower was not working.
import { createRuntime, mnist, type StepEvent } from '../src/runtime.js';
import { mnistMlp } from '../src/model/spec.js';
import { availableParallelism } from 'node:os';
import { readFileSync } from 'node:fs';
import type { Row, Section } from './section.js';

const BATCH = 128;
const WARMUP = 20;
const MEASURED = 200;
const REPS = 4;  // runs per tower count, interleaved over the tower counts (order reversed every other rep)
const TOWERS = [1, 2, 4];
const ALGORITHM = 'ring' as const;

/** This thread's CPU time in us (Linux's /proc/thread-self/schedstat: ns on a CPU), or NaN where there is none. */
function threadCpuUs(): number {
  try {
    return Number(readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ')[0]) / 1000;
  } catch {
    return NaN;
  }
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.round(q * (s.length - 1))))]!;
};

interface RunStats {
  towers: number;
  examplesPerSec: number;    // median of per-step batch / wall
  throughputTotal: number;   // measured examples / elapsed arrival time
  overheadUs: number[];      // per measured step
  overheadRunUs: number;     // elapsed / measured steps - mean slowest tower time (the whole run)
  overheadRunBusyUs: number; // elapsed / measured steps - mean slowest busy time (the whole run)
  overheadSkewUs: number[];  // wall - max busy, per measured step
  wallMs: number[];
  maxTowerMs: number[];
  maxBusyMs: number[];
  idleMs: number[];          // the largest idle among towers, per step
  reduceMs: number[];        // the slowest tower's reduce phase (incl. its barrier waits), per step
  skewUs: number[];          // max - min of the towers' program start times, per step
  gapUs: number[];           // the largest device-thread gap between the previous step's program and this one's
  jsCpuUs: number;           // the JS thread's CPU time over the measured steps / measured steps
  finalLoss: number;
}

async function runOnce(rt: Awaited<ReturnType<typeof createRuntime>>, towers: number, seed: number, layout: (text: string) => void): Promise<RunStats> {
  const events: { e: StepEvent; at: number }[] = [];
  const run = rt.train({
    model: mnistMlp(),
    optimizer: { type: 'momentum', lr: 0.01, momentum: 0.9 },
    data: mnist({ batchSize: BATCH }),
    steps: WARMUP + MEASURED,
    seed,
  });
  const cpu: number[] = [];
  run.events$.subscribe((e) => {
    if (e.type === 'started' && e.layout) layout(e.layout);
  });
  run.steps$.subscribe((e) => {
    events.push({ e, at: performance.now() });
    if (events.length === WARMUP || events.length === WARMUP + MEASURED) cpu.push(threadCpuUs());
  });
  const summary = await run.done;
  await new Promise((r) => setImmediate(r));  // let the last events arrive (delivered in a microtask: Note [Run stream delivery])
  if (events.length !== WARMUP + MEASURED) throw new Error(`towers ${towers}: got ${events.length} step events, expected ${WARMUP + MEASURED}`);
  if (!Number.isFinite(summary.finalLoss)) throw new Error(`towers ${towers}: training diverged (loss ${summary.finalLoss})`);
  const measured = events.slice(WARMUP);
  const s: RunStats = { towers, examplesPerSec: 0, throughputTotal: 0, overheadUs: [], overheadRunUs: 0, overheadRunBusyUs: 0, gapUs: [], jsCpuUs: (cpu[1]! - cpu[0]!) / MEASURED, overheadSkewUs: [], wallMs: [], maxTowerMs: [], maxBusyMs: [], idleMs: [], reduceMs: [], skewUs: [], finalLoss: summary.finalLoss };
  measured.forEach(({ e }, k) => {
    const prev = events[WARMUP + k - 1]!.e.towers;
    s.gapUs.push(Math.max(...e.towers.map((t, i) => (t.startMs - (prev[i]!.startMs + prev[i]!.total)) * 1000)));
  });
  for (const { e } of measured) {
    const wall = e.secPerBatch * 1000;
    const maxTower = Math.max(...e.towers.map((t) => t.total));
    s.wallMs.push(wall);
    s.maxTowerMs.push(maxTower);
    s.overheadUs.push((wall - maxTower) * 1000);
    const maxBusy = Math.max(...e.towers.map((t) => t.total - t.idle));
    s.maxBusyMs.push(maxBusy);
    s.overheadSkewUs.push((wall - maxBusy) * 1000);
    s.idleMs.push(Math.max(...e.towers.map((t) => t.idle)));
    s.reduceMs.push(Math.max(...e.towers.map((t) => t.reduce)));
    const starts = e.towers.map((t) => t.startMs);
    s.skewUs.push((Math.max(...starts) - Math.min(...starts)) * 1000);
  }
  s.examplesPerSec = median(measured.map(({ e }) => e.examplesPerSec));
  const elapsed = (measured[measured.length - 1]!.at - events[WARMUP - 1]!.at) / 1000;
  s.throughputTotal = (MEASURED * BATCH) / elapsed;
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  s.overheadRunUs = ((elapsed * 1000) / MEASURED - mean(s.maxTowerMs)) * 1000;
  s.overheadRunBusyUs = ((elapsed * 1000) / MEASURED - mean(s.maxBusyMs)) * 1000;
  return s;
}

export const towersStep: Section = {
  name: 'towers',
  description: `MNIST 784-500-10 through the runtime, global batch ${BATCH}, ${TOWERS.join('/')} CPU towers (${ALGORITHM} all-reduce): examples/s and per-step runtime overhead`,
  async run(): Promise<Row[]> {
    // 'fold': 4 towers asked for with layout.extraTowers 'fold' (Note [CPU layout]): one device thread per core.
    // 'pinned': 1 tower with layout.pin true (Note [Thread placement]): what placement changes, in the same run.
    const configs: Array<number | 'fold' | 'pinned'> = [...TOWERS, 'fold', 'pinned'];
    const runtimes = new Map<number | 'fold' | 'pinned', Awaited<ReturnType<typeof createRuntime>>>();
    const byTowers = new Map<number | 'fold' | 'pinned', RunStats[]>(configs.map((n) => [n, []]));
    const layouts = new Map<number | 'fold' | 'pinned', string>();
    try {
      for (const n of TOWERS) runtimes.set(n, await createRuntime({ devices: `cpu*${n}`, reduction: { algorithm: ALGORITHM }, layout: { extraTowers: 'threads' } })); // a thread per tower
      runtimes.set('fold', await createRuntime({ devices: 'cpu*4', reduction: { algorithm: ALGORITHM }, layout: { extraTowers: 'fold' } }));
      runtimes.set('pinned', await createRuntime({ devices: 'cpu*1', reduction: { algorithm: ALGORITHM }, layout: { pin: true } }));
      // Interleave the tower counts so a burst of load from other processes does not land on one of them only, in
      // the reverse order every other rep so no configuration always runs right after the same one (the fold used to
      // follow the oversubscribed 4-thread run every time).
      for (let rep = 0; rep < REPS; rep++)
        for (const n of rep % 2 === 0 ? configs : [...configs].reverse())
          byTowers.get(n)!.push(await runOnce(runtimes.get(n)!, runtimes.get(n)!.devices.length, rep + 1, (l) => layouts.set(n, l)));
    } finally {
      await Promise.all([...runtimes.values()].map((rt) => rt.close()));
    }

    // Per tower count: the run with the median examples/sec; step statistics pooled over all runs.
    const pick = (n: number | 'fold' | 'pinned') => {
      const runs = byTowers.get(n)!;
      const pooled = (f: (r: RunStats) => number[]) => runs.flatMap(f);
      return {
        runs,
        eps: median(runs.map((r) => r.examplesPerSec)),
        epsTotal: median(runs.map((r) => r.throughputTotal)),
        overhead: median(pooled((r) => r.overheadUs)),
        overheadRun: median(runs.map((r) => r.overheadRunUs)),
        overheadRunBusy: median(runs.map((r) => r.overheadRunBusyUs)),
        overheadP10: quantile(pooled((r) => r.overheadUs), 0.1),
        overheadP90: quantile(pooled((r) => r.overheadUs), 0.9),
        overheadSkew: median(pooled((r) => r.overheadSkewUs)),
        wall: median(pooled((r) => r.wallMs)),
        maxTower: median(pooled((r) => r.maxTowerMs)),
        busy: median(pooled((r) => r.maxBusyMs)),
        idle: median(pooled((r) => r.idleMs)),
        reduce: median(pooled((r) => r.reduceMs)),
        skew: median(pooled((r) => r.skewUs)),
        gap: median(pooled((r) => r.gapUs)),
        jsCpu: median(runs.map((r) => r.jsCpuUs)),
        gapMean: pooled((r) => r.gapUs).reduce((a, b) => a + b, 0) / pooled((r) => r.gapUs).length,
      };
    };
    const stats = new Map(configs.map((n) => [n, pick(n)]));

    console.log(`  # per step, median over ${REPS} runs x ${MEASURED} steps (after ${WARMUP} warm-up steps each), ms unless said`);
    console.log(`  # towers  examples/s  (total-time)   wall   max tower  max busy  max idle  reduce  skew us  overhead us (p10..p90)  incl. skew us  over run us  vs busy us  gap us (mean)  JS cpu us  (target <= 20 us at 1 and 2 towers)`);
    for (const n of TOWERS) {
      const s = stats.get(n)!;
      console.log(`  ${String(n).padStart(8)} ${s.eps.toFixed(0).padStart(11)} ${`(${s.epsTotal.toFixed(0)})`.padStart(13)} ${s.wall.toFixed(3).padStart(7)} ` +
        `${s.maxTower.toFixed(3).padStart(10)} ${s.busy.toFixed(3).padStart(9)} ${s.idle.toFixed(3).padStart(9)} ${s.reduce.toFixed(3).padStart(7)} ${s.skew.toFixed(0).padStart(8)} ` +
        `${s.overhead.toFixed(0).padStart(12)} ${`(${s.overheadP10.toFixed(0)}..${s.overheadP90.toFixed(0)})`.padEnd(12)} ${s.overheadSkew.toFixed(0).padStart(12)} ${s.overheadRun.toFixed(0).padStart(12)} ${s.overheadRunBusy.toFixed(0).padStart(10)} ${s.gap.toFixed(0).padStart(6)} ${`(${s.gapMean.toFixed(0)})`.padStart(6)} ${s.jsCpu.toFixed(0).padStart(10)}`);
    }

    const one = stats.get(1)!;
    const pinned = stats.get('pinned')!;
    console.log(`  # 1 tower with layout.pin true (${layouts.get('pinned') ?? '?'}): ${pinned.eps.toFixed(0)} examples/s, overhead ${pinned.overhead.toFixed(0)} us (median gap ${pinned.gap.toFixed(0)} us), JS cpu ${pinned.jsCpu.toFixed(0)} us`);
    const rows: Row[] = [];
    for (const n of TOWERS) {
      const s = stats.get(n)!;
      const row: Row = {
        name: `mnist through the runtime, B=${BATCH}, ${n} tower${n > 1 ? 's' : ''}`,
        value: s.eps,
        unit: 'examples/s',
        note: `median of per-step examples/s over ${REPS} x ${MEASURED} steps; runs ${s.runs.map((r) => r.examplesPerSec.toFixed(0)).join(', ')}; ` +
          `by total time ${s.epsTotal.toFixed(0)}; final loss ${s.runs.map((r) => r.finalLoss.toFixed(3)).join(', ')}`,
      };
      if (n > 1) {
        row.reference = { value: one.eps, label: '1 tower through the runtime' };
        row.ratio = s.eps / one.eps;
        if (n === 2) {
          row.target = '2 towers >= 1 tower (ratio >= 1.0)';
          row.met = row.ratio >= 1.0;
        }
      }
      rows.push(row);
    }
    // Note [Thread placement]: the same 1-tower run with its threads pinned, interleaved with the others.
    rows.push({
      name: '  mnist through the runtime, 1 tower, threads pinned (layout.pin true) vs not (the default)',
      value: pinned.eps,
      unit: 'examples/s',
      reference: { value: one.eps, label: '1 tower, not pinned' },
      ratio: pinned.eps / one.eps,
      note: `runs ${pinned.runs.map((r) => r.examplesPerSec.toFixed(0)).join(', ')}; overhead per step ${pinned.overhead.toFixed(0)} us (not pinned ${one.overhead.toFixed(0)}), ` +
        `over the whole run ${pinned.overheadRun.toFixed(0)} us (not pinned ${one.overheadRun.toFixed(0)}); JS thread CPU per step ${pinned.jsCpu.toFixed(0)} us (not pinned ${one.jsCpu.toFixed(0)}); ` +
        `${layouts.get('pinned') ?? '?'}`,
    });
    // Issue 16: more towers than cores never slower than as many towers as cores.
    const cores = availableParallelism();
    const capped = stats.get(Math.min(2, cores));
    if (capped && cores < 4) {
      for (const [key, how] of [[4, "a device thread each, time-sharing the cores"], ['fold', "layout.extraTowers 'fold', the default"]] as const) {
        const four = stats.get(key)!;
        rows.push({
          name: `4 towers asked for on ${cores} cores (${how}) vs ${Math.min(2, cores)} towers`,
          value: four.eps,
          unit: 'examples/s',
          reference: { value: capped.eps, label: `${Math.min(2, cores)} towers through the runtime` },
          ratio: four.eps / capped.eps,
          target: 'ratio >= 1.0 (issue 16)',
          met: four.eps >= capped.eps,
        });
      }
    }
    for (const n of TOWERS) {
      const s = stats.get(n)!;
      rows.push({
        name: `runtime overhead per step, ${n} tower${n > 1 ? 's' : ''} (wall - slowest tower's device-thread time)`,
        value: s.overhead,
        unit: 'us',
        reference: { value: s.maxTower * 1000, label: "slowest tower's device-thread time (us)" },
        target: n <= 2 ? '<= 20 us (issue 16)' : '<= 100 us',
        met: s.overhead <= (n <= 2 ? 20 : 100),
        note: `median over ${REPS} x ${MEASURED} steps, p10 ${s.overheadP10.toFixed(0)} us, p90 ${s.overheadP90.toFixed(0)} us; ` +
          `wall ${s.wall.toFixed(3)} ms, slowest tower ${s.maxTower.toFixed(3)} ms (busy ${s.busy.toFixed(3)}, idle ${s.idle.toFixed(3)}) = ${((s.overhead / 1000 / s.wall) * 100).toFixed(0)}% of the step; ` +
          `over the whole run (elapsed / steps - mean slowest tower) ${s.overheadRun.toFixed(0)} us; device threads between two step programs (median gap) ${s.gap.toFixed(0)} us, mean ${s.gapMean.toFixed(0)} us (a mean far above the median: devices left idle, e.g. by a late JS wake-up or a drain); steps pipelined (Note [Pipelined steps])`,
      });
    }
    for (const n of TOWERS) {
      const s = stats.get(n)!;
      rows.push({
        name: `  runtime overhead per step over the whole run, ${n} tower${n > 1 ? 's' : ''} (elapsed / steps - mean slowest tower's device-thread time)`,
        value: s.overheadRun,
        unit: 'us',
        target: n <= 2 ? '<= 20 us (issue 16)' : '<= 100 us',
        met: s.overheadRun <= (n <= 2 ? 20 : 100),
        note: `median of ${REPS} runs x ${MEASURED} steps: ${s.runs.map((r) => r.overheadRunUs.toFixed(0)).join(', ')} us; ` +
          `against the slowest busy time (barrier waits left out): ${s.overheadRunBusy.toFixed(0)} us (${s.runs.map((r) => r.overheadRunBusyUs.toFixed(0)).join(', ')}); ` +
          `JS thread CPU per step ${s.runs.map((r) => r.jsCpuUs.toFixed(0)).join(', ')} us`,
      });
    }
    for (const n of TOWERS) {
      const s = stats.get(n)!;
      rows.push({
        name: `  runtime cost per step incl. start skew, ${n} tower${n > 1 ? 's' : ''} (wall - slowest tower's busy time)`,
        value: s.overheadSkew,
        unit: 'us',
        note: `median over ${REPS} x ${MEASURED} steps; = ${((s.overheadSkew / 1000 / s.wall) * 100).toFixed(0)}% of the step; median start skew ${s.skew.toFixed(0)} us; ` +
          `busy = device-thread time less the all-reduce barrier waits (which absorb the skew between the towers' starts)`,
      });
    }
    for (const n of TOWERS) {
      const s = stats.get(n)!;
      rows.push({
        name: `  JS thread CPU per step, ${n} tower${n > 1 ? 's' : ''} (the coordinator's thread, not part of the overhead; it shares the cores)`,
        value: s.jsCpu,
        unit: 'us',
        note: `median of ${REPS} runs x ${MEASURED} steps: ${s.runs.map((r) => r.jsCpuUs.toFixed(0)).join(', ')} us (/proc/thread-self/schedstat; NaN where there is none)`,
      });
    }
    return rows;
  },
};
