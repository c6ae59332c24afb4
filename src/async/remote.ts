// Mode 'async' across processes (Note [Parameter-server link] in cpp/ps/link.h): the processes of a run meet in a
// process group (src/group/process-group.ts: the rendezvous and its run-token check), then connect the parameter-
// server link through the same store. Ranks 0..S-1 are the servers (TOWERLINE_ASYNC_SERVERS, default 1), each owning
// one shard of the parameters (Note [Parameter shards]); the other ranks are workers. Rank 0, the lead server, drives
// every worker's towers with the asynchronous loop (src/async/loop.ts) through RemoteAsyncTower; every other server
// follows (follow()): per tower, it waits at its own staleness gate, sends its shard's master weights, takes the
// gradient of its shard back and applies it. A worker's tower waits for work (a batch number and the lead's shard,
// then every other server's shard), computes the gradient through its tower port and sends each shard's part to its
// server, with the gradient's global norm. The lead gathers the other shards to evaluate and to checkpoint, and
// scatters a resumed checkpoint's shards before any tower starts (src/async/shard-link.ts). A worker that dies is
// dropped like a local tower; a server that dies fails every worker's wait on it at once, naming it.
import { TowerError } from '../errors.js';
import { loadInput } from '../data/inputs.js';
import type { LoopContext } from '../coordinator/train-loop.js';
import type { RunKind } from '../coordinator/run.js';
import type { RunSummary } from '../events.js';
import { ProcessGroup } from '../group/process-group.js';
import { nativeClockOffset } from '../tower-port/worker-port.js';
import type { FaultSpec } from '../tower-port/protocol.js';
import type { TowerPort } from '../tower-port/port.js';
import type { NumberedBatch } from './batches.js';
import { psNative, type Applied, type LinkHeader } from './native.js';
import { asyncLoop, openServer, planOf, TRAIN_SET, trainingOf } from './run.js';
import type { ServerTower } from './server.js';
import { withDeadline, type AsyncTower, type Computed } from './tower.js';
import { StalenessGate } from './gate.js';
import { asyncSettings } from './settings.js';
import { shardBySize } from './shards.js';
import { ROLE_ENV, serversOf } from './roles.js';
import { answerLead, OtherServers, serverError, serverLabel, startFromLead } from './shard-link.js';

export { ROLE_ENV } from './roles.js';

/** Header kinds on the link. */
const WORK = 1;
const STOP = 2;
const GRADIENT = 3;
/** Gradient header values: [loss, gradNorm, input, forward, backward, total] ms, then these. */
const NORM_SQ = 6; // the whole gradient's squared norm, f32 (Note [Global norm across shards])
const OTHER_STALENESS = 7; // the largest staleness of this push at the other servers
const REG_LOSS = 8; // the L2 loss of the weights it pulled
/** A work header's values[0]: the sending server's staleness of the push to come (cpp/napi/ps_link.cc). */
const STALENESS = 0;

const messageOf = (e: unknown): string => (e instanceof Error ? e.message : String(e));

/** Each server's element range of the arenas (Note [Parameter shards]), from the parameters' sizes and offsets. */
function rangesOf(params: ReadonlyArray<{ numel: number; offset: number }>, servers: number): Array<{ offset: number; length: number }> {
  return shardBySize(params.map((p) => p.numel * 4), servers).map((s) => ({
    offset: params[s.first]!.offset,
    length: params.slice(s.first, s.end).reduce((n, p) => n + p.numel, 0),
  }));
}

/** The process group and the link of this process; closed together. */
class Connection {
  private constructor(
    readonly group: ProcessGroup,
    readonly link: number,
  ) {}

  static async open(): Promise<Connection> {
    const group = await ProcessGroup.create();
    try {
      const { rank, worldSize: size, runId, rdzv, address, rendezvousTimeoutMs } = group.options;
      const link = await psNative().psLinkConnect({ rank, size, runId, rdzv, address, timeoutMs: rendezvousTimeoutMs });
      return new Connection(group, link);
    } catch (e) {
      group.close();
      throw e;
    }
  }

  /** Every process's tower count, in rank order (the server's is 0). */
  async towerCounts(mine: number): Promise<number[]> {
    const all = await this.group.allGather(new TextEncoder().encode(String(mine)));
    return all.map((b) => Number(new TextDecoder().decode(b)));
  }

  close(): void {
    psNative().psLinkClose(this.link);
    this.group.close();
  }
}

/** A worker's tower as the server's loop drives it: work goes down the link, the gradient comes back. */
class RemoteAsyncTower implements AsyncTower {
  readonly device: string;
  readonly death = new Promise<Error>(() => {}); // a dead worker shows in the calls on its link
  private readonly offset = nativeClockOffset();
  private done = false;
  /** The last gradient's global squared norm, which its push carries (Note [Global norm across shards]). */
  private normSq = NaN;

  constructor(
    private readonly link: number,
    private readonly peer: number,
    private readonly slot: number,
    private readonly rank: number,
    private readonly server: ServerTower,
  ) {
    this.device = `tower ${slot} of worker rank ${peer}`;
  }

  async compute(batch: NumberedBatch, deadlineMs: number, _fault: FaultSpec | undefined): Promise<Computed> {
    const ps = psNative();
    const fail = (call: string) => (e: unknown): never => {
      throw e instanceof TowerError ? e : new TowerError(this.device, call, e instanceof Error ? e.message : String(e));
    };
    const header: LinkHeader = { kind: WORK, tower: this.rank, batch: batch.number, version: 0, values: [] };
    const pulled = await withDeadline(ps.psLinkSendWork(this.link, this.peer, this.slot, header, this.server.native, this.rank, this.server.offset, this.server.length), deadlineMs, this.device, 'send work').catch(fail('send work'));
    const got = await withDeadline(ps.psLinkRecvGradient(this.link, this.peer, this.slot, this.server.length), deadlineMs, this.device, 'gradient').catch((e: unknown) => {
      ps.psLinkAbort(this.link, this.peer, this.slot); // late bytes land in parked buffers; the link stays usable
      return fail('gradient')(e);
    });
    if (got.kind !== GRADIENT || got.batch !== batch.number) throw new TowerError(this.device, 'gradient', `expected the gradient of batch ${batch.number}; got message kind ${got.kind} for batch ${got.batch}`);
    const [loss = NaN, , input = 0, forward = 0, backward = 0, total = 0] = got.values;
    this.normSq = got.values[NORM_SQ] ?? NaN;
    const now = performance.now();
    return {
      pulled,
      otherStaleness: got.values[OTHER_STALENESS] ?? 0,
      loss,
      regLoss: got.values[REG_LOSS] ?? 0,
      normSq: this.normSq,
      timings: { startMs: now - total, input, forward, backward, reduce: 0, update: 0, total },
      pullMs: [pulled.startMs + this.offset, pulled.endMs + this.offset],
    };
  }

  push(): Promise<Applied> {
    const { offset, length } = this.server;
    return psNative()
      .psPushStaged(this.link, this.peer, this.slot, this.server.native, this.rank, offset, length, this.normSq)
      .then((a) => ({ ...a, startMs: a.startMs + this.offset, endMs: a.endMs + this.offset }));
  }

  firstNonFinite(): Promise<string | undefined> {
    return Promise.resolve(undefined);
  }

  async release(why?: string): Promise<void> {
    if (this.done) return;
    this.done = true;
    if (why) psNative().psLinkAbort(this.link, this.peer, this.slot);
    else await psNative().psLinkSendStop(this.link, this.peer, this.slot, { kind: STOP, tower: this.rank, batch: 0, version: 0, values: [] }, 5000).catch(() => undefined);
  }
}

/** Rank 0: the (lead) server, driving every worker's towers; this process's own towers stay idle. */
async function serve(c: LoopContext, conn: Connection, servers: number): Promise<RunSummary> {
  const { o } = c;
  const counts = await conn.towerCounts(0);
  const input = await loadInput(o.data, { withTest: o.evaluate, inputShape: o.model.input.shape });
  const { plan, order } = planOf(o, input.train.count);
  const peers = counts.flatMap((n, peer) => Array.from({ length: n }, (_, slot) => ({ peer, slot })));
  const labels = peers.map(({ peer, slot }) => `tower ${slot} of worker rank ${peer}`);
  const shard = servers > 1 ? (bytes: number[]) => shardBySize(bytes, servers)[0]! : undefined;
  const { server, checkpoints, start, resumed } = await openServer(c, input, { count: peers.length, labels, deviceIndex: c.towers.size }, plan, shard);
  const { timeoutMs, rendezvousTimeoutMs } = conn.group.options;
  const others = new OtherServers(conn.link, server, servers, timeoutMs, o.emaDecay !== undefined, rendezvousTimeoutMs);
  if (servers > 1) {
    server.gatherShards = () => others.gatherForEvaluation(server.info().version);
    checkpoints.gather = (v) => others.gatherForCheckpoint(v);
  }
  try {
    await others.start(start, resumed);
    c.emitEvent({ type: 'started', step: start, totalSteps: plan.totalSteps, stepsPerEpoch: plan.perEpoch, devices: labels });
    const towers = peers.map(({ peer, slot }, r) => new RemoteAsyncTower(conn.link, peer, slot, r, server));
    const loop = asyncLoop(c, { towers, server, plan, order, start, checkpoints, evaluate: input.test !== undefined }, { faults: undefined });
    return await loop.run();
  } finally {
    await others.stop();
    await server.close();
  }
}

/** Ranks 1..S-1: a server of one shard, following every worker's towers (and the lead's requests for its shard). */
async function follow(c: LoopContext, conn: Connection, me: number, servers: number): Promise<RunSummary> {
  const { o } = c;
  const counts = await conn.towerCounts(0);
  const input = await loadInput(o.data, { withTest: false, inputShape: o.model.input.shape });
  const { plan } = planOf(o, input.train.count);
  const peers = counts.flatMap((n, peer) => Array.from({ length: n }, (_, slot) => ({ peer, slot })));
  const labels = peers.map(({ peer, slot }) => `tower ${slot} of worker rank ${peer}`);
  const shard = (bytes: number[]) => shardBySize(bytes, servers)[me]!;
  const waitMs = conn.group.options.timeoutMs;
  const startAt = (s: ServerTower) => startFromLead(conn.link, s, me, conn.group.options.rendezvousTimeoutMs);
  const { server, start } = await openServer(c, input, { count: peers.length, labels, deviceIndex: c.towers.size }, plan, shard, startAt);
  const ps = psNative();
  const gate = new StalenessGate(peers.length, asyncSettings(o, peers.length).maxStaleness);
  let version = start;
  let finished = 0;
  let dropped = 0;
  // The lead's requests wait until this server took the pushes the lead had (Note [Shard checkpoints]).
  const waiting: Array<() => void> = [];
  const progressed = () => waiting.splice(0).forEach((f) => f());
  const caughtUp = async (v: number): Promise<void> => {
    const until = performance.now() + waitMs;
    while (version + dropped < v && finished + dropped < peers.length && performance.now() < until)
      await new Promise<void>((r) => {
        const timer = setTimeout(r, Math.max(1, until - performance.now()));
        waiting.push(() => (clearTimeout(timer), r()));
      });
  };
  const towerLoop = async (r: number): Promise<void> => {
    const { peer, slot } = peers[r]!;
    const header = { kind: WORK, tower: r, batch: 0, version: 0, values: [] };
    try {
      for (;;) {
        await gate.wait(r);
        if (!gate.isAlive(r)) return;
        await ps.psLinkSendWork(conn.link, peer, slot, header, server.native, r, server.offset, server.length);
        const got = await ps.psLinkRecvGradient(conn.link, peer, slot, server.length);
        if (got.kind === STOP) {
          finished++;
          progressed();
          gate.drop(r); // done: no longer holds the others back
          return;
        }
        if (got.kind !== GRADIENT) throw new Error(`expected a gradient; got message kind ${got.kind}`);
        const a = await ps.psPushStaged(conn.link, peer, slot, server.native, r, server.offset, server.length, got.values[NORM_SQ]);
        gate.advance(r, a.clock);
        version = Math.max(version, a.version);
        progressed();
      }
    } catch (e) {
      if (!gate.isAlive(r)) return;
      gate.drop(r);
      server.drop(r);
      dropped++;
      progressed();
      c.emitEvent({ type: 'towerDropped', step: version, tower: r, device: labels[r]!, reason: messageOf(e), remaining: gate.live });
    }
  };
  try {
    c.emitEvent({ type: 'started', step: start, totalSteps: plan.totalSteps, stepsPerEpoch: plan.perEpoch, devices: labels });
    await Promise.all([Promise.all(peers.map((_, r) => towerLoop(r))), answerLead(conn.link, server, me, waitMs, caughtUp)]);
    if (finished === 0 && peers.length > 0) throw serverError(me, 'train', 'every worker tower was dropped before the run ended');
    return { steps: version, epochs: plan.epochs, finalLoss: NaN };
  } finally {
    gate.close();
    await server.close();
  }
}

/** Every other rank: each tower of this process computes the gradients the servers ask for, until the lead says stop. */
async function work(c: LoopContext, conn: Connection, servers: number): Promise<RunSummary> {
  const { towers, o } = c;
  await conn.towerCounts(towers.size);
  const input = await loadInput(o.data, { withTest: false, inputShape: o.model.input.shape });
  await towers.build({ spec: o.model, maxBatch: o.data.batchSize, training: trainingOf(o) }, o.seed);
  await towers.upload(TRAIN_SET, input.train, input.trainTransform);
  const { plan, order } = planOf(o, input.train.count);
  const waitMs = conn.group.options.timeoutMs;
  const crop = input.stepParams;
  const ranges = rangesOf(towers.built[0]!.params, servers);
  const others = ranges.slice(1).map((range, i) => ({ k: i + 1, ...range }));
  let last = { version: 0, loss: NaN };
  const loopOf = async (port: TowerPort, slot: number): Promise<void> => {
    const ep = port.endpoint();
    if (ep.kind !== 'native') throw new Error(`mode 'async' needs native towers; ${port.device} is a ${ep.kind} tower`);
    const { weightArena, gradArena } = ep.arenas;
    const ps = psNative();
    const fromServer = (k: number, call: string) => (e: unknown): never => {
      throw e instanceof TowerError ? e : serverError(k, call, `${messageOf(e)} (tower ${port.device} of this worker was waiting for it)`);
    };
    const [lead] = ranges;
    const otherWork = () =>
      Promise.all(
        others.map(async ({ k, offset, length }) => {
          const h = await ps.psLinkRecvWork(conn.link, k, slot, weightArena, offset, length, waitMs).catch(fromServer(k, 'send work'));
          if (h.kind !== WORK) throw serverError(k, 'send work', `expected work; got message kind ${h.kind}`);
          return h.values[STALENESS] ?? 0;
        }),
      );
    for (;;) {
      const h = await ps.psLinkRecvWork(conn.link, 0, slot, weightArena, lead!.offset, lead!.length, waitMs).catch(fromServer(0, 'send work'));
      if (h.kind !== WORK || c.stopped()) {
        // The end: every other server's last work is taken and answered with a stop.
        await otherWork();
        const stop = { kind: STOP, tower: h.tower, batch: 0, version: 0, values: [] };
        await Promise.all(others.map(({ k, offset, length }) => ps.psLinkSendGradient(conn.link, k, slot, gradArena, offset, length, stop, waitMs).catch(fromServer(k, 'stop'))));
        return;
      }
      const otherStaleness = Math.max(0, ...(await otherWork()));
      const batch = order.at(h.batch);
      const B = batch.indices.length;
      const reply = await port.step(
        { dataset: TRAIN_SET, indices: batch.indices, ...(crop ? { crop: crop(o.seed, batch.number, batch.indices) } : {}), lr: 0, t: batch.number + 1, gradScale: 1 / B, variant: 'gradient' },
        o.guard.stepTimeoutMs ?? c.callMs,
        c.faults?.(h.batch + 1, slot), // this process's fault plan: step = batch number + 1, rank = tower slot
      );
      const t = reply.timings;
      const values = [reply.loss, reply.gradNorm, t.input, t.forward, t.backward, t.total, Math.fround(reply.gradNorm * reply.gradNorm), otherStaleness, reply.regLoss];
      const gradient = { kind: GRADIENT, tower: h.tower, batch: h.batch, version: h.version, values };
      await Promise.all(ranges.map(({ offset, length }, k) => ps.psLinkSendGradient(conn.link, k, slot, gradArena, offset, length, gradient, waitMs).catch(fromServer(k, 'gradient'))));
      last = { version: Math.max(last.version, h.version + 1), loss: reply.loss };
    }
  };
  await Promise.all(towers.ports.map((p, slot) => loopOf(p, slot)));
  return { steps: last.version, epochs: plan.epochs, finalLoss: last.loss };
}

/** Mode 'async' as rank `role` of a run across processes. */
export function remoteAsyncRun(role: string, env: Record<string, string | undefined> = process.env): RunKind {
  return {
    loop: (c) => {
      let step = 0;
      return {
        get state() {
          return { step };
        },
        async run() {
          const servers = serversOf(env);
          const conn = await Connection.open();
          try {
            const rank = conn.group.rank;
            if (servers >= conn.group.worldSize) throw new Error(`${servers} parameter servers in a run of ${conn.group.worldSize} processes leave no worker`);
            if ((role === 'server') !== (rank < servers))
              throw new Error(`${ROLE_ENV}=${role} on rank ${rank}: ranks 0..${servers - 1} are the parameter servers and every other rank a worker`);
            const s = role !== 'server' ? await work(c, conn, servers) : rank === 0 ? await serve(c, conn, servers) : await follow(c, conn, rank, servers);
            step = s.steps;
            return s;
          } finally {
            conn.close();
          }
        },
      };
    },
    observers: async () => [],
  };
}
