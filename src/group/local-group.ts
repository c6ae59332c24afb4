// The local group: the towers of this process joined by native communicators over their arenas (any thread), or,
// for towers on the float64 reference backend, by an in-process collective running the same schedules.
import { native } from '../native/addon.js';
import { broadcastSchedule } from '../scheduler/broadcast.js';
import { ReferenceCollective } from '../reference/reference-collective.js';
import type { TowerPort, GroupEndpoint } from '../tower-port/port.js';
import type { ConnectGroup, GroupOptions, TowerGroup } from './group.js';

type Comms = { grad: number; weights: number; setSchedule: TowerGroup['setSchedule']; release(): void };

function nativeComms(eps: GroupEndpoint[], o: GroupOptions): Comms {
  const n = eps.length;
  const nat = native();
  const grad = nat.createComm(eps.map((e) => e.arenas.gradArena), o.schedule, o.timeoutMs);
  let weights: number;
  try {
    o.remote?.attach(grad);
    weights = nat.createComm(eps.map((e) => e.arenas.weightArena), broadcastSchedule(n, o.length), o.timeoutMs);
  } catch (e) {
    nat.releaseComm(grad);
    throw e;
  }
  return {
    grad,
    weights,
    setSchedule: (s) => nat.setCommSchedule(grad, s),
    release: () => {
      nat.releaseComm(grad);
      nat.releaseComm(weights);
    },
  };
}

function referenceComms(eps: GroupEndpoint[], o: GroupOptions, names: string[]): Comms {
  const views = (pick: 'gradArena' | 'weightArena') =>
    eps.map((e) => {
      if (e.kind !== 'reference') throw new Error('unreachable: mixed endpoints');
      return e.backend.view(e.arenas[pick]) as Float64Array;
    });
  const grad = new ReferenceCollective(views('gradArena'), o.schedule, o.timeoutMs, names);
  const weights = new ReferenceCollective(views('weightArena'), broadcastSchedule(eps.length, o.length), o.timeoutMs, names);
  return {
    grad: grad.id,
    weights: weights.id,
    setSchedule: (s) => grad.setSchedule(s),
    release: () => {
      grad.release();
      weights.release();
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
    await Promise.all(ports.map((p, rank) => p.joinGroup({ grad: { comm: comms.grad, rank }, weights: { comm: comms.weights, rank } })));
  } catch (e) {
    release();
    throw e;
  }
  const remote = o.remote;
  const first = eps[0]!.arenas.weightArena;
  return {
    size: ports.length,
    ...(remote ? { shareWeights: () => remote.broadcastBuffer(first, 0, 0, o.length, 0) } : {}),
    setSchedule: (s) => {
      if (!released) comms.setSchedule(s);
    },
    abort: release, // releasing a communicator aborts every tower blocked in it (Note [Collective executor])
    release,
  };
};
