// The servers of an async run with several parameter servers, talking to each other (src/async/remote.ts): the
// lead (rank 0) scatters a resumed checkpoint's shards at the start, and gathers every other server's shard before
// an evaluation (weights, and the EMA when there is one) and before a checkpoint (weights, optimizer slots, EMA).
// The bytes go between the servers' device buffers over the parameter-server link natively (psLinkSendBuffers /
// psLinkRecvBuffers), never through JS. Note [Shard checkpoints].
//
// Note [Shard checkpoints]: a checkpoint of a run with several servers has the format of a one-server checkpoint:
// every parameter's weights, optimizer slots and EMA by name, and the lead's version. The lead writes it, alone and
// atomically (src/async/checkpoint.ts, the one-server code): at version v, with its own pushes held back, it asks
// every other server for its shard's state; that server answers once it has taken at least the pushes the lead has
// (v, less one per tower it dropped, whose last part may never come), reading its whole shard in one task on its
// device thread, so between two of its pushes. With one worker tower the servers take the same pushes in the same
// order and the checkpoint is the state of one moment, bit for bit; with several towers another server may have
// taken a few pushes more (in flight at the lead) when it answers. Resume: the lead loads the checkpoint (any server
// count wrote it), keeps its own shard and sends every other server its shard's state and the version to serve
// from, before any tower starts; so a checkpoint resumes on any number of servers, one included.
import { TowerError } from '../errors.js';
import type { Param } from '../model/memory.js';
import { stateTensors } from '../model/state.js';
import { psNative, type LinkHeader } from './native.js';
import type { ServerTower } from './server.js';
import { shardBySize } from './shards.js';
import { withDeadline } from './tower.js';

/** Header kinds between the servers (after the worker link's 1..4; 2, STOP, ends the other server's answering). */
const LEAD_STOP = 2;
const START = 5;
const EVALUATE = 6;
const SNAPSHOT = 7;

export const serverLabel = (rank: number): string => `parameter server (rank ${rank})`;
/** A failure of (or a wait on) parameter server `rank`, named as the server, not as a tower on it. */
export const serverError = (rank: number, call: string, cause: string): TowerError => new TowerError(serverLabel(rank), call, cause, serverLabel(rank));

const messageOf = (e: unknown): string => (e instanceof Error ? e.message : String(e));
const header = (kind: number, version: number, values: number[] = []): LinkHeader => ({ kind, tower: 0, batch: 0, version, values });

/** The buffers of `params` that a checkpoint holds (weights, optimizer slots, EMA), in stateTensors' order. */
export const stateBuffers = (params: Param[]): number[] => stateTensors(params).map((t) => t.handle);

/** The buffers an evaluation reads: the weights, and the EMA when `ema`. */
export const evalBuffers = (params: Param[], ema: boolean): number[] => params.flatMap((p) => (ema && p.ema !== undefined ? [p.w, p.ema] : [p.w]));

/** Each server's parameters (Note [Parameter shards]). */
export function shardParams(params: Param[], servers: number): Param[][] {
  return shardBySize(params.map((p) => p.numel * 4), servers).map((s) => params.slice(s.first, s.end));
}

/** The lead server's side: the other servers, on slot 0 of the link. */
export class OtherServers {
  private readonly shards: Param[][];

  constructor(
    private readonly link: number,
    private readonly server: ServerTower,
    servers: number,
    private readonly waitMs: number,
    private readonly ema: boolean,
    /** The start's deadline: the other servers may still be loading their data (the rendezvous deadline). */
    private readonly startMs: number,
  ) {
    this.shards = shardParams(server.tower.params, servers);
  }

  private get others(): number[] {
    return this.shards.map((_, k) => k).slice(1);
  }

  /** Before any tower starts: every other server's version to serve from, and its shard's state when resumed. */
  async start(version: number, resumed: boolean): Promise<void> {
    const ps = psNative();
    for (const k of this.others) {
      const buffers = resumed ? stateBuffers(this.shards[k]!) : [];
      await ps.psLinkSendBuffers(this.link, k, 0, buffers, header(START, version, [resumed ? 1 : 0]), false, this.startMs).catch(this.failed(k, 'start'));
    }
  }

  /** Every other server's shard of the master weights (and EMA) into the lead's tower, as of version `version`. */
  gatherForEvaluation(version: number): Promise<void> {
    return this.gather(EVALUATE, version, (k) => evalBuffers(this.shards[k]!, this.ema), 'evaluate');
  }

  /** Every other server's shard of the state into the lead's tower, as of version `version` (Note [Shard checkpoints]). */
  gatherForCheckpoint(version: number): Promise<void> {
    return this.gather(SNAPSHOT, version, (k) => stateBuffers(this.shards[k]!), 'checkpoint');
  }

  /** The end: every other server stops answering. */
  async stop(): Promise<void> {
    for (const k of this.others) await psNative().psLinkSendStop(this.link, k, 0, header(LEAD_STOP, 0), 5000).catch(() => undefined);
  }

  private async gather(kind: number, version: number, buffers: (k: number) => number[], call: string): Promise<void> {
    const ps = psNative();
    for (const k of this.others) {
      const fail = this.failed(k, call);
      await ps.psLinkSendStop(this.link, k, 0, header(kind, version), this.waitMs).catch(fail);
      // The other server may first wait up to waitMs for its pushes to catch up: twice that for the answer.
      const got = await withDeadline(ps.psLinkRecvBuffers(this.link, k, 0, buffers(k), true, true, 0), 2 * this.waitMs, serverLabel(k), call, serverLabel(k)).catch(fail);
      if (got.kind !== kind) fail(new Error(`expected the answer to message kind ${kind}; got kind ${got.kind}`));
    }
  }

  private failed(k: number, call: string) {
    return (e: unknown): never => {
      psNative().psLinkAbort(this.link, k, 0);
      throw e instanceof TowerError ? e : serverError(k, call, messageOf(e));
    };
  }
}

/** Another server's side: the version to serve from (and a resumed shard's state), before its towers start;
 *  `waitMs`: the rendezvous deadline (the lead may still be loading its data and a checkpoint). */
export async function startFromLead(link: number, server: ServerTower, me: number, waitMs: number): Promise<number> {
  const ps = psNative();
  const fail = (e: unknown): never => {
    throw serverError(0, 'start', `${messageOf(e)} (${serverLabel(me)} was waiting for it)`);
  };
  const h = await ps.psLinkRecvWork(link, 0, 0, server.tower.weightArena, 0, 0, waitMs).catch(fail);
  if (h.kind !== START) fail(new Error(`expected the start (message kind ${START}); got kind ${h.kind}`));
  if (h.values[0]) await ps.psLinkRecvBuffers(link, 0, 0, stateBuffers(server.shardParams()), false, false, waitMs).catch(fail);
  return h.version;
}

/** Another server's side: answers the lead's requests for its shard until the lead says stop. `caughtUp(v)` settles
 *  once this server took the pushes the lead had at version v (or after a deadline). */
export async function answerLead(link: number, server: ServerTower, me: number, waitMs: number, caughtUp: (v: number) => Promise<void>): Promise<void> {
  const ps = psNative();
  const ema = server.tower.params[0]?.ema !== undefined;
  for (;;) {
    const h = await ps.psLinkRecvWork(link, 0, 0, server.tower.weightArena, 0, 0, 0).catch((e: unknown): never => {
      throw serverError(0, 'evaluate', `${messageOf(e)} (${serverLabel(me)} was waiting for it)`);
    });
    if (h.kind !== EVALUATE && h.kind !== SNAPSHOT) return;
    await caughtUp(h.version);
    const own = server.shardParams();
    const buffers = h.kind === EVALUATE ? evalBuffers(own, ema) : stateBuffers(own);
    await ps.psLinkSendBuffers(link, 0, 0, buffers, header(h.kind, server.info().version), true, waitMs);
  }
}
