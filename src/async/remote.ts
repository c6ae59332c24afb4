// Mode 'async' across processes (Note [Parameter-server link] in cpp/ps/link.h): the processes of a run meet in a
// process group (src/group/process-group.ts: the rendezvous and its run-token check), then connect the parameter-
// server link through the same store. Ranks 0..S-1 are the servers (TOWERLINE_ASYNC_SERVERS, default 1), each owning
// one shard of the parameters (Note [Parameter shards]); the other ranks are workers. Rank 0, the lead server, drives
// every worker's towers with the asynchronous loop (src/async/loop.ts) through RemoteAsyncTower; every other server
// follows (follow()): per tower, it waits at its own staleness gate, sends its shard's master weights, takes the
// gradient of its shard back and applies it. A worker's tower waits for work (a batch number and the lead's shard,
// then every other server's shard), computes the gradient through its tower port and sends each shard's part to its
// server. A worker that dies is dropped like a local tower; a server that dies fails every worker's wait on it at
// once, naming it.
import { ConfigError, TowerError } from '../errors.js';
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

export { ROLE_ENV } from './roles.js';

/** Header kinds on the link. */
const WORK = 1;
const STOP = 2;
const GRADIENT = 3;
/** The lead server asks another for its shard's master weights (to evaluate). */
const EVALUATE = 4;

export const serverLabel = (rank: number): string => `parameter server (rank ${rank})`;
export const SERVER_LABEL = serverLabel(0);

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
    const [loss = NaN, gradNorm = NaN, input = 0, forward = 0, backward = 0, total = 0] = got.values;
    const now = performance.now();
    return {
      pulled,
      loss,
      localNormSq: gradNorm * gradNorm,
      timings: { startMs: now - total, input, forward, backward, reduce: 0, update: 0, total },
      pullMs: [pulled.startMs + this.offset, pulled.endMs + this.offset],
    };
  }

  push(): Promise<Applied> {
    const { offset, length } = this.server;
    return psNative()
      .psPushStaged(this.link, this.peer, this.slot, this.server.native, this.rank, offset, length)
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
  const { server, checkpoints, start } = await openServer(c, input, { count: peers.length, labels, deviceIndex: c.towers.size }, plan, shard);
  const waitMs = conn.group.options.timeoutMs;
  if (servers > 1) server.gatherShards = () => gatherShards(conn, server, servers, waitMs);
  try {
    c.emitEvent({ type: 'started', step: start, totalSteps: plan.totalSteps, stepsPerEpoch: plan.perEpoch, devices: labels });
    const towers = peers.map(({ peer, slot }, r) => new RemoteAsyncTower(conn.link, peer, slot, r, server));
    const loop = asyncLoop(c, { towers, server, plan, order, start, checkpoints, evaluate: input.test !== undefined }, { faults: undefined });
    return await loop.run();
  } finally {
    for (let k = 1; k < servers; k++) await psNative().psLinkSendStop(conn.link, k, 0, { kind: STOP, tower: 0, batch: 0, version: 0, values: [] }, 5000).catch(() => undefined);
    await server.close();
  }
}

/** The lead server, before an evaluation: every other server's shard of the master weights into its own tower. */
async function gatherShards(conn: Connection, server: ServerTower, servers: number, waitMs: number): Promise<void> {
  const ps = psNative();
  const ranges = rangesOf(server.tower.params, servers);
  for (let k = 1; k < servers; k++) {
    const { offset, length } = ranges[k]!;
    const fail = (e: unknown): never => {
      ps.psLinkAbort(conn.link, k, 0);
      throw e instanceof TowerError ? e : new TowerError(serverLabel(k), 'evaluate', messageOf(e));
    };
    await ps.psLinkSendStop(conn.link, k, 0, { kind: EVALUATE, tower: 0, batch: 0, version: 0, values: [] }, waitMs).catch(fail);
    await withDeadline(ps.psLinkRecvGradient(conn.link, k, 0, length), waitMs, serverLabel(k), 'evaluate').catch(fail);
    await ps.psLinkTakeStaged(conn.link, k, 0, server.tower.weightArena, offset, length);
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
  const { server } = await openServer(c, input, { count: peers.length, labels, deviceIndex: c.towers.size }, plan, shard);
  const ps = psNative();
  const waitMs = conn.group.options.timeoutMs;
  const gate = new StalenessGate(peers.length, asyncSettings(o, peers.length).maxStaleness);
  let version = 0;
  let finished = 0;
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
          gate.drop(r); // done: no longer holds the others back
          return;
        }
        if (got.kind !== GRADIENT) throw new Error(`expected a gradient; got message kind ${got.kind}`);
        const a = await ps.psPushStaged(conn.link, peer, slot, server.native, r, server.offset, server.length);
        gate.advance(r, a.clock);
        version = Math.max(version, a.version);
      }
    } catch (e) {
      if (!gate.isAlive(r)) return;
      gate.drop(r);
      server.drop(r);
      c.emitEvent({ type: 'towerDropped', step: version, tower: r, device: labels[r]!, reason: messageOf(e), remaining: gate.live });
    }
  };
  const requests = async (): Promise<void> => {
    for (;;) {
      const h = await ps.psLinkRecvWork(conn.link, 0, 0, server.tower.weightArena, 0, 0, 0).catch((e: unknown): never => {
        throw new TowerError(SERVER_LABEL, 'evaluate', `${messageOf(e)} (${serverLabel(me)} was waiting for it)`);
      });
      if (h.kind !== EVALUATE) return;
      await ps.psLinkSendGradient(conn.link, 0, 0, server.tower.weightArena, server.offset, server.length, h, waitMs);
    }
  };
  try {
    c.emitEvent({ type: 'started', step: 0, totalSteps: plan.totalSteps, stepsPerEpoch: plan.perEpoch, devices: labels });
    await Promise.all([Promise.all(peers.map((_, r) => towerLoop(r))), requests()]);
    if (finished === 0 && peers.length > 0) throw new TowerError(serverLabel(me), 'train', 'every worker tower was dropped before the run ended');
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
      throw e instanceof TowerError ? e : new TowerError(serverLabel(k), call, `${messageOf(e)} (tower ${port.device} of this worker was waiting for it)`);
    };
    const [lead] = ranges;
    const otherWork = () =>
      Promise.all(
        others.map(async ({ k, offset, length }) => {
          const h = await ps.psLinkRecvWork(conn.link, k, slot, weightArena, offset, length, waitMs).catch(fromServer(k, 'send work'));
          if (h.kind !== WORK) throw new TowerError(serverLabel(k), 'send work', `expected work; got message kind ${h.kind}`);
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
      await otherWork();
      const batch = order.at(h.batch);
      const B = batch.indices.length;
      const reply = await port.step(
        { dataset: TRAIN_SET, indices: batch.indices, ...(crop ? { crop: crop(o.seed, batch.number, batch.indices) } : {}), lr: 0, t: batch.number + 1, gradScale: 1 / B, variant: 'gradient' },
        o.guard.stepTimeoutMs ?? c.callMs,
      );
      const t = reply.timings;
      const values = [reply.loss, reply.gradNorm, t.input, t.forward, t.backward, t.total];
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
          if (servers > 1 && c.o.checkpoint)
            throw new ConfigError(`checkpoints of an async run with ${servers} parameter servers are not supported yet (each server owns a shard; docs/async.md): run without 'checkpoint' or with one server`, 'checkpoint');
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
