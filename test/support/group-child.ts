// One rank of a multi-process test (test/group.test.ts): joins a process group and runs a scenario, writing one
// JSON line per event to stdout: {event: 'ready' | 'result' | 'looping' | 'error' | 'closed', ...}.
// Usage: node --import tsx test/support/group-child.ts '<json ChildArgs>'
import { createHash } from 'node:crypto';
import { native } from '../../src/native/addon.js';
import { ProcessGroup } from '../../src/group/process-group.js';
import { hierarchicalSchedule } from '../../src/scheduler/hierarchical.js';
import { relErr, testRandom } from '../../src/reference/relerr.js';

export interface ChildArgs {
  scenario: 'collectives' | 'loop' | 'stall' | 'join';
  rank: number;
  worldSize: number;
  runId: string;
  rdzv: string;
  token?: string;
  slots?: number;
  timeoutMs?: number;
  rendezvousTimeoutMs?: number;
  /** collectives: all-reduce sizes (elements) on slot 0, and the hierarchical schedule's buffer lengths. */
  sizes?: number[];
  hierarchical?: number[];
  /** stall: the rank that does not call the all-reduce. */
  stallRank?: number;
}

const args = JSON.parse(process.argv[2]!) as ChildArgs;
const nat = native();
const t0 = Date.now();
const emit = (event: string, data: Record<string, unknown> = {}) =>
  process.stdout.write(JSON.stringify({ event, rank: args.rank, ms: Date.now() - t0, ...data }) + '\n');
const hash = (a: Float32Array) => createHash('sha256').update(Buffer.from(a.buffer, a.byteOffset, a.byteLength)).digest('hex');

/** Rank `who`'s input of `n` elements: small integers (exact sums in f32 in any order) or seeded randoms. */
function input(kind: 'int' | 'rand', who: number, n: number): Float32Array {
  if (kind === 'int') return Float32Array.from({ length: n }, (_, i) => ((i * 7 + who * 13) % 101) - 50);
  const rand = testRandom(1000 + who);
  return Float32Array.from({ length: n }, () => rand() * 2 - 1);
}

/** The float64 sum over contributors 0..count-1. */
function sumOf(kind: 'int' | 'rand', count: number, n: number): Float64Array {
  const out = new Float64Array(n);
  for (let w = 0; w < count; w++) input(kind, w, n).forEach((v, i) => (out[i]! += v));
  return out;
}

function exactlyEqual(a: Float32Array, b: Float64Array): boolean {
  return a.every((v, i) => v === b[i]);
}

async function flatAllReduces(g: ProcessGroup, dev: number): Promise<unknown[]> {
  const out: unknown[] = [];
  for (const n of args.sizes ?? []) {
    const buf = nat.alloc(dev, n, 'f32');
    const row: Record<string, unknown> = { n };
    for (const kind of ['int', 'rand'] as const) {
      nat.write(buf, input(kind, args.rank, n));
      await g.allReduce(buf, 0, 0, n);
      const got = nat.read(buf) as Float32Array;
      const ref = sumOf(kind, args.worldSize, n);
      row[kind] = kind === 'int' ? exactlyEqual(got, ref) : relErr(got, ref);
      row[`${kind}Hash`] = hash(got);
    }
    nat.free(buf);
    out.push(row);
  }
  return out;
}

// Two (slots) cpu towers in this process, one communicator with the hierarchical schedule across all processes.
async function hierarchical(g: ProcessGroup): Promise<unknown[]> {
  const towers = g.slots;
  const devs = Array.from({ length: towers }, (_, t) => nat.openDevice('cpu', 10 + t).id);
  const out: unknown[] = [];
  try {
    for (const n of args.hierarchical ?? []) {
      const bufs = devs.map((d) => nat.alloc(d, n, 'f32'));
      const comm = nat.createComm(bufs, hierarchicalSchedule({ ranks: towers, length: n }), 60_000);
      g.attach(comm);
      const progs = devs.map((d, t) => nat.compile(d, [{ kernel: '@collective', inputs: [], outputs: [], attrs: { comm, rank: t } }]));
      const row: Record<string, unknown> = { n };
      for (const kind of ['int', 'rand'] as const) {
        bufs.forEach((b, t) => nat.write(b, input(kind, args.rank * towers + t, n)));
        await Promise.all(progs.map((p) => nat.runWith(p, [], [])));
        const got = bufs.map((b) => nat.read(b) as Float32Array);
        const ref = sumOf(kind, args.worldSize * towers, n);
        row[kind] = kind === 'int' ? exactlyEqual(got[0]!, ref) : relErr(got[0]!, ref);
        row[`${kind}Hashes`] = got.map(hash);
      }
      progs.forEach((p) => nat.releaseProgram(p));
      nat.releaseComm(comm);
      bufs.forEach((b) => nat.free(b));
      out.push(row);
    }
  } finally {
    devs.forEach((d) => nat.closeDevice(d));
  }
  return out;
}

async function main(): Promise<void> {
  let g: ProcessGroup | undefined;
  try {
    g = await ProcessGroup.create({
      rank: args.rank,
      worldSize: args.worldSize,
      runId: args.runId,
      rdzv: args.rdzv,
      token: args.token,
      slots: args.slots ?? 1,
      timeoutMs: args.timeoutMs ?? 30_000,
      rendezvousTimeoutMs: args.rendezvousTimeoutMs ?? 30_000,
    }, {});
    emit('ready', { peers: g.peers });
    if (args.scenario === 'join') return;
    const dev = nat.openDevice('cpu', 0).id;
    if (args.scenario === 'collectives') {
      const gathered = await g.allGather(new TextEncoder().encode(`rank ${args.rank} `.repeat(args.rank + 1)));
      const root = args.worldSize - 1;
      const bcast = await g.broadcast(args.rank === root ? new TextEncoder().encode(`from ${root}`) : null, root);
      await g.barrier();
      const flat = await flatAllReduces(g, dev);
      const hier = await hierarchical(g);
      emit('result', { gathered: gathered.map((b) => new TextDecoder().decode(b)), bcast: new TextDecoder().decode(bcast), flat, hier });
    } else {
      // loop / stall: all-reduces of 1M elements back to back until the group fails.
      const n = 1 << 20;
      const buf = nat.alloc(dev, n, 'f32');
      nat.write(buf, input('rand', args.rank, n));
      if (args.scenario === 'stall') {
        emit('looping');
        if (args.rank === args.stallRank) await new Promise((r) => setTimeout(r, 2 * (args.timeoutMs ?? 30_000)));
      }
      for (let i = 0; ; i++) {
        await g.allReduce(buf, 0, 0, n);
        if (i === 3 && args.scenario === 'loop') emit('looping');
      }
    }
  } catch (e) {
    emit('error', { message: (e as Error).message });
  } finally {
    if (g) {
      g.close();
      emit('closed');
    }
  }
}

await main();
