// The local group: the towers of this process joined by native communicators over their arenas (any thread), or,
// for towers on the float64 reference backend, by an in-process collective running the same schedules.
import { native } from '../native/addon.js';
import { broadcastSchedule } from '../scheduler/broadcast.js';
import { ReferenceCollective } from '../reference/reference-collective.js';
import type { TowerPort, GroupEndpoint } from '../tower-port/port.js';
import type { ConnectGroup, GroupOptions, TowerGroup } from './group.js';
import { barrierSchedule, reduceScatterSchedule } from '../scheduler/shards.js';
import type { Schedule } from '../scheduler/schedule.js';
import type { ShardComms } from '../model/sharded-update.js';
import { fusesReduce } from '../model/shard-plan.js';
import { shardComms } from './shard-comms.js';

type Comms = { grad: number; weights: number; buckets?: number[]; shard?: ShardComms; setSchedule: TowerGroup['setSchedule']; release(): void };

/** The gradient collective: the all-reduce, or with the sharded update the reduce-scatter (Note [Sharded update]). */
const gradSchedule = (o: GroupOptions) => (o.shards ? reduceScatterSchedule(o.shards) : o.schedule);

/**
 * One communicator per bucket over views of every tower's gradient arena (Note [Overlapped all-reduce] in
 * cpp/collective/overlap.h), each with its own validated schedule and the process group's remote steps.
 */
function bucketComms(eps: GroupEndpoint[], o: GroupOptions, made: { views: number[]; comms: number[] }): number[] {
  const nat = native();
  for (const b of o.buckets ?? []) {
    const views = eps.map((e) => nat.allocView(e.arenas.gradArena, b.offset, b.length));
    made.views.push(...views);
    const comm = nat.createComm(views, b.schedule, o.timeoutMs);
    made.comms.push(comm);
    o.remote?.attach(comm);
  }
  return made.comms;
}

/**
 * With shared weights the start-up broadcast has nothing to copy, and with the fused reduce neither has the gradient
 * collective: they are barriers, over the partials buffers (Notes [Shared weights], [Shared gradients]).
 */
function overPartials(eps: GroupEndpoint[], s: Schedule, timeoutMs: number): number {
  const partials = eps.map((e, r) => e.arenas.shardBuffers?.partials ?? unshared(r));
  return native().createComm(partials, s, timeoutMs);
}

function unshared(rank: number): never {
  throw new Error(`tower ${rank} has no shard buffers but the group was told its weights are shared; rebuild every tower with the sharded update`);
}

function nativeComms(eps: GroupEndpoint[], o: GroupOptions): Comms {
  const n = eps.length;
  const nat = native();
  const fused = o.shards !== undefined && fusesReduce(o.sharedWeights === true, n); // Note [Shared gradients]
  const grad = fused ? overPartials(eps, barrierSchedule(), o.timeoutMs) : nat.createComm(eps.map((e) => e.arenas.gradArena), gradSchedule(o), o.timeoutMs);
  let weights: number | undefined;
  let shard: ShardComms | undefined;
  const made = { views: [] as number[], comms: [] as number[] };
  const extra: number[] = [];
  const free = () => {
    for (const c of [grad, ...(weights !== undefined ? [weights] : []), ...made.comms, ...extra]) nat.releaseComm(c);
    for (const v of made.views) nat.free(v);
  };
  try {
    o.remote?.attach(grad);
    weights = o.sharedWeights ? overPartials(eps, barrierSchedule(), o.timeoutMs) : nat.createComm(eps.map((e) => e.arenas.weightArena), broadcastSchedule(n, o.length), o.timeoutMs);
    bucketComms(eps, o, made);
    if (o.shards) shard = shardComms(eps, o.shards, o.sharedWeights === true, (pick, s) => (extra.push(nat.createComm(eps.map(pick), s, o.timeoutMs)), extra[extra.length - 1]!));
    if (shard && fused) {
      shard.gradients = eps.map((e) => e.arenas.gradArena);
      const factors = eps.map((e) => e.arenas.shardBuffers?.factors);
      if (factors.every((f) => f !== undefined)) shard.factors = factors;
    }
  } catch (e) {
    free();
    throw e;
  }
  return {
    grad,
    weights,
    ...(o.buckets ? { buckets: made.comms } : {}),
    ...(shard ? { shard } : {}),
    setSchedule: (s, buckets) => {
      if (!o.shards) nat.setCommSchedule(grad, s); // the reduce-scatter keeps its schedule
      buckets?.forEach((b, k) => nat.setCommSchedule(made.comms[k]!, b));
    },
    release: free,
  };
}

function referenceComms(eps: GroupEndpoint[], o: GroupOptions, names: string[]): Comms {
  const views = (pick: 'gradArena' | 'weightArena') =>
    eps.map((e) => {
      if (e.kind !== 'reference') throw new Error('unreachable: mixed endpoints');
      return e.backend.view(e.arenas[pick]) as Float64Array;
    });
  const grad = new ReferenceCollective(views('gradArena'), gradSchedule(o), o.timeoutMs, names);
  const weights = new ReferenceCollective(views('weightArena'), broadcastSchedule(eps.length, o.length), o.timeoutMs, names);
  const extra: ReferenceCollective[] = [];
  const live = (e: (typeof eps)[number], h: number) => (e.kind === 'reference' ? (e.backend.view(h) as Float64Array) : new Float64Array(0));
  const shard = o.shards ? shardComms(eps, o.shards, false, (pick, s) => extra[extra.push(new ReferenceCollective(eps.map((e) => live(e, pick(e))), s, o.timeoutMs, names)) - 1]!.id) : undefined;
  return {
    grad: grad.id,
    weights: weights.id,
    ...(shard ? { shard } : {}),
    setSchedule: (s) => {
      if (!o.shards) grad.setSchedule(s);
    },
    release: () => {
      grad.release();
      weights.release();
      for (const c of extra) c.release();
    },
  };
}

/** Connects built towers of this process: one gradient communicator and one weight broadcast over their arenas. */
export const connectLocalGroup: ConnectGroup = async (ports: TowerPort[], o: GroupOptions): Promise<TowerGroup> => {
  const eps = ports.map((p) => p.endpoint());
  const kinds = new Set(eps.map((e) => e.kind));
  if (kinds.size !== 1)
    throw new Error(`a local group needs towers of one kind; given ${ports.map((p, r) => `${p.device} (${eps[r]!.kind})`).join(', ')}`);
  if (kinds.has('reference') && o.remote)
    throw new Error(`towers on the float64 reference backend (${ports.map((p) => p.device).join(', ')}) cannot join a process group; use native devices`);
  const comms = kinds.has('reference') ? referenceComms(eps, o, ports.map((p) => p.device)) : nativeComms(eps, o);
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    comms.release();
  };
  try {
    const overlap = comms.buckets ? { buckets: comms.buckets.map((comm, k) => ({ comm, offset: o.buckets![k]!.offset, length: o.buckets![k]!.length })), timeoutMs: o.timeoutMs } : undefined;
    // A tower alone (one tower, no other process, no buckets) has nothing to reduce: no gradient slot, so its step
    // program is a lone tower's, with no collective (Note [Lone tower's local norms] in src/model/passes.ts).
    const alone = ports.length === 1 && !o.remote && !overlap && !comms.shard;
    await Promise.all(
      ports.map((p, rank) =>
        p.joinGroup({ ...(alone ? {} : { grad: { comm: comms.grad, rank, ...(overlap ? { overlap } : {}), ...(comms.shard ? { shard: comms.shard } : {}) } }), weights: { comm: comms.weights, rank } }),
      ),
    );
  } catch (e) {
    release();
    throw e;
  }
  const remote = o.remote;
  const first = eps[0]!.arenas.weightArena;
  return {
    size: ports.length,
    ...(remote ? { shareWeights: () => remote.broadcastBuffer(first, 0, 0, o.length, 0) } : {}),
    setSchedule: (s, buckets) => {
      if (!released) comms.setSchedule(s, buckets);
    },
    abort: release, // releasing a communicator aborts every tower blocked in it (Note [Collective executor])
    release,
  };
};
