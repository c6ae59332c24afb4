// Mode 'async' across processes (Note [Parameter-server link] in cpp/ps/link.h): the processes of a run meet in a
// process group (src/group/process-group.ts: the rendezvous and its run-token check), then connect the parameter-
// server link through the same store. Rank 0 is the server: it drives every worker's towers with the asynchronous
// loop (src/async/loop.ts) through RemoteAsyncTower; every other rank is a worker: each of its towers waits for work
// (a batch number and the master weights), computes the gradient through its tower port and sends it back. A worker
// that dies is dropped like a local tower; a server that dies fails every worker's wait at once, naming it.
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

/** 'server' (rank 0) or 'worker': set by whoever starts the processes, with the group's TOWERLINE_* variables. */
export const ROLE_ENV = 'TOWERLINE_ASYNC_ROLE';

/** Header kinds on the link. */
const WORK = 1;
const STOP = 2;
const GRADIENT = 3;

export const SERVER_LABEL = 'parameter server (rank 0)';

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

/** Rank 0: the server, driving every worker's towers; this process's own towers stay idle. */
async function serve(c: LoopContext, conn: Connection): Promise<RunSummary> {
  const { o } = c;
  const counts = await conn.towerCounts(0);
  const input = await loadInput(o.data, { withTest: o.evaluate, inputShape: o.model.input.shape });
  const { plan, order } = planOf(o, input.train.count);
  const peers = counts.flatMap((n, peer) => Array.from({ length: n }, (_, slot) => ({ peer, slot })));
  const labels = peers.map(({ peer, slot }) => `tower ${slot} of worker rank ${peer}`);
  const { server, checkpoints, start } = await openServer(c, input, { count: peers.length, labels, deviceIndex: c.towers.size }, plan);
  try {
    c.emitEvent({ type: 'started', step: start, totalSteps: plan.totalSteps, stepsPerEpoch: plan.perEpoch, devices: labels });
    const towers = peers.map(({ peer, slot }, r) => new RemoteAsyncTower(conn.link, peer, slot, r, server));
    const loop = asyncLoop(c, { towers, server, plan, order, start, checkpoints, evaluate: input.test !== undefined }, { faults: undefined });
    return await loop.run();
  } finally {
    await server.close();
  }
}

/** Every other rank: each tower of this process computes the gradients the server asks for, until it says stop. */
async function work(c: LoopContext, conn: Connection): Promise<RunSummary> {
  const { towers, o } = c;
  await conn.towerCounts(towers.size);
  const input = await loadInput(o.data, { withTest: false, inputShape: o.model.input.shape });
  await towers.build({ spec: o.model, maxBatch: o.data.batchSize, training: trainingOf(o) }, o.seed);
  await towers.upload(TRAIN_SET, input.train, input.trainTransform);
  const { plan, order } = planOf(o, input.train.count);
  const waitMs = conn.group.options.timeoutMs;
  const crop = input.stepParams;
  let last = { version: 0, loss: NaN };
  const loopOf = async (port: TowerPort, slot: number): Promise<void> => {
    const ep = port.endpoint();
    if (ep.kind !== 'native') throw new Error(`mode 'async' needs native towers; ${port.device} is a ${ep.kind} tower`);
    const { weightArena, gradArena } = ep.arenas;
    const length = towers.built[slot]!.paramCount;
    const ps = psNative();
    const fromServer = (call: string) => (e: unknown): never => {
      throw new TowerError(SERVER_LABEL, call, `${e instanceof Error ? e.message : String(e)} (tower ${port.device} of this worker was waiting for it)`);
    };
    for (;;) {
      const h = await ps.psLinkRecvWork(conn.link, 0, slot, weightArena, 0, length, waitMs).catch(fromServer('send work'));
      if (h.kind !== WORK || c.stopped()) return;
      const batch = order.at(h.batch);
      const B = batch.indices.length;
      const reply = await port.step(
        { dataset: TRAIN_SET, indices: batch.indices, ...(crop ? { crop: crop(o.seed, batch.number, batch.indices) } : {}), lr: 0, t: batch.number + 1, gradScale: 1 / B, variant: 'gradient' },
        o.guard.stepTimeoutMs ?? c.callMs,
      );
      const t = reply.timings;
      const values = [reply.loss, reply.gradNorm, t.input, t.forward, t.backward, t.total];
      await ps.psLinkSendGradient(conn.link, 0, slot, gradArena, 0, length, { kind: GRADIENT, tower: h.tower, batch: h.batch, version: h.version, values }, waitMs).catch(fromServer('gradient'));
      last = { version: Math.max(last.version, h.version + 1), loss: reply.loss };
    }
  };
  await Promise.all(towers.ports.map((p, slot) => loopOf(p, slot)));
  return { steps: last.version, epochs: plan.epochs, finalLoss: last.loss };
}

/** Mode 'async' as rank `role` of a run across processes. */
export function remoteAsyncRun(role: string): RunKind {
  return {
    loop: (c) => {
      let step = 0;
      return {
        get state() {
          return { step };
        },
        async run() {
          const conn = await Connection.open();
          try {
            if ((role === 'server') !== (conn.group.rank === 0))
              throw new Error(`${ROLE_ENV}=${role} on rank ${conn.group.rank}: rank 0 is the parameter server and every other rank a worker`);
            const s = role === 'server' ? await serve(c, conn) : await work(c, conn);
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
