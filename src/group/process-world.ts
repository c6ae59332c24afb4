// The process world: a run whose towers live in several processes joined by a ProcessGroup (Note [Process
// dimension] in src/group/world.ts). Every control exchange is one all-gather or broadcast of a small tagged JSON
// blob on the group's control context, in the same order on every rank; a rank that finds another rank at a
// different exchange fails naming both, rather than reading one exchange's bytes as another's.
import { ConfigError, ScheduleError } from '../errors.js';
import { settingsDiff } from '../coordinator/checkpoints.js';
import { hierarchicalSchedule } from '../scheduler/hierarchical.js';
import { REMOTE, validateSchedule, type Schedule, type ScheduleRequest } from '../scheduler/schedule.js';
import { parseReduction } from '../scheduler/select.js';
import type { ReductionOptions } from '../options.js';
import type { ConnectGroup } from './group.js';
import type { ProcessGroup } from './process-group.js';
import type { World, WorldReplicaReport, WorldShape } from './world.js';

/** Bytes per broadcast of a large blob (the control context carries at most 64 MiB at once). */
const CHUNK = 16 << 20;

/**
 * The gradient all-reduce across processes: 'auto' and 'ring' are the hierarchical schedule (a local ring, Gloo's
 * ring across processes, the local all-gather); a custom strategy must plan remote steps (Note [Remote steps]).
 * 'tree' and 'naive' run inside one process only. The schedule is validated like every other.
 */
export function planAcrossProcesses(reduction: ReductionOptions | undefined, req: ScheduleRequest): Schedule {
  const o = parseReduction(reduction);
  let s: Schedule;
  if ('custom' in o) {
    s = o.custom.plan({ ...req });
    if (!s.phases.some((phase) => phase.some((steps) => steps.some((st) => st[0] === REMOTE))))
      throw new ScheduleError(
        `schedule '${s.name}' has no remote steps, so it would sum this process's towers only; across processes a schedule ` +
          'needs remote steps (see hierarchicalSchedule in towerline/advanced)',
      );
  } else if (o.algorithm === 'auto' || o.algorithm === 'ring') {
    s = hierarchicalSchedule(req, o.chunkElems);
  } else {
    throw new ConfigError(
      `reduction: '${o.algorithm}' runs inside one process only; across processes towerline runs the hierarchical all-reduce ` +
        "(a local ring, then Gloo's ring across processes): use { algorithm: 'auto' } or 'ring', or a custom strategy with remote steps",
      'reduction',
    );
  }
  validateSchedule(s, req);
  return s;
}

interface Tagged {
  tag: string;
  [k: string]: unknown;
}

const encode = (v: Tagged) => new TextEncoder().encode(JSON.stringify(v));
const decode = (b: Uint8Array) => JSON.parse(new TextDecoder().decode(b)) as Tagged;

export class ProcessWorld implements World {
  readonly processes: number;
  readonly rank: number;
  readonly towersPerProcess: number;
  readonly towers: number;
  readonly writesCheckpoints: boolean;
  readonly processesOnHost: number;
  readonly localRank: number;
  readonly grouped = true;
  private stopAgreed = false;

  constructor(private readonly group: ProcessGroup) {
    this.processes = group.worldSize;
    this.rank = group.rank;
    this.towersPerProcess = group.slots;
    this.towers = this.processes * this.towersPerProcess;
    this.writesCheckpoints = this.rank === 0;
    this.processesOnHost = group.options.localWorldSize;
    this.localRank = group.options.localRank;
  }

  get shape(): WorldShape {
    return { processes: this.processes, towersPerProcess: this.towersPerProcess };
  }

  /** "rank 1 on host box-b (10.0.0.2)", as the native errors name ranks. */
  label(rank: number): string {
    const p = this.group.peers[rank];
    return p ? `rank ${rank} on host ${p.hostname} (${p.address})` : `rank ${rank}`;
  }

  plan = planAcrossProcesses;

  connect(local: ConnectGroup): ConnectGroup {
    return (ports, o) => local(ports, { ...o, remote: this.group });
  }

  mine<T>(all: T[]): T[] {
    return all.slice(this.rank * this.towersPerProcess, (this.rank + 1) * this.towersPerProcess);
  }

  /** Every rank's blob for exchange `tag`; fails (stopping the group) when a rank is at another exchange. */
  private async exchange(tag: string, body: Record<string, unknown>): Promise<Tagged[]> {
    const all = (await this.group.allGather(encode({ ...body, tag }))).map(decode);
    const other = all.findIndex((b) => b.tag !== tag);
    if (other >= 0) this.mismatch(`${this.label(other)} was at '${all[other]!.tag}' while this rank was at '${tag}'`);
    return all;
  }

  private mismatch(what: string): never {
    const why = `the processes of this run are out of step: ${what}; every rank must run the same program (towerline launch starts them alike)`;
    this.group.abort(why);
    throw new Error(why);
  }

  async agree(what: string, value: unknown): Promise<void> {
    const all = await this.exchange(`agree ${what}`, { value });
    const ref = JSON.parse(JSON.stringify(all[0]!.value)) as unknown;
    const lines = all.flatMap((b, q) =>
      q === 0 ? [] : settingsDiff(ref, b.value).map((d) => `${this.label(q)}: ${d.replace(': saved ', ': rank 0 has ').replace(', given ', `, rank ${q} has `)}`),
    );
    if (lines.length === 0) return;
    throw new ConfigError(
      `the processes of this run disagree on ${what}, so they cannot train together (every rank checked this before step 1):\n  ${lines.join('\n  ')}\n` +
        'Start every rank with the same options.',
      what,
    );
  }

  async afterStep(step: number, localLoss: number, stopRequested: boolean): Promise<{ loss: number; stop: boolean }> {
    const all = await this.exchange('after step', { step, loss: localLoss, stop: stopRequested });
    const other = all.findIndex((b) => b.step !== step);
    if (other >= 0) this.mismatch(`${this.label(other)} finished step ${String(all[other]!.step)} while this rank finished step ${step}`);
    let loss = 0;
    for (const b of all) loss += b.loss as number; // rank order: the same sum on every rank
    this.stopAgreed = all.some((b) => b.stop === true);
    return { loss, stop: this.stopAgreed };
  }

  stopping(): boolean {
    return this.stopAgreed;
  }

  async compareReplicas(local: WorldReplicaReport, total: string, tensors: Array<[string, string]>): Promise<WorldReplicaReport> {
    const all = await this.exchange('replica check', { report: local, total, tensors });
    const ref = all[0]!;
    const detail: string[] = [];
    const differing: string[] = [];
    all.forEach((b, q) => {
      const r = b.report as WorldReplicaReport;
      if (!r.consistent) {
        detail.push(`${this.label(q)}: ${r.detail}`);
        differing.push(...r.differing.map((d) => `rank ${q}/${d}`));
      }
      if (q === 0 || b.total === ref.total) return;
      const mine = b.tensors as Array<[string, string]>;
      const refTensors = ref.tensors as Array<[string, string]>;
      const tensor = mine.find(([name, v], i) => refTensors[i]?.[0] === name && refTensors[i]?.[1] !== v)?.[0];
      detail.push(`${this.label(q)}: tower 0 differs from rank 0's tower 0 in '${tensor ?? '?'}'`);
      differing.push(`rank ${q}`);
    });
    return detail.length === 0
      ? { consistent: true, differing: [], detail: `all ${this.towers} towers of ${this.processes} processes hash to ${ref.total as string}` }
      : { consistent: false, differing, detail: detail.join('; ') };
  }

  async fromRoot(what: string, produce: () => Promise<Uint8Array | undefined>): Promise<Uint8Array | undefined> {
    const tag = `from rank 0: ${what}`;
    let payload: Uint8Array | undefined;
    let failure: unknown;
    let header: Tagged = { tag, size: -1 };
    if (this.rank === 0) {
      try {
        payload = await produce();
        header = { tag, size: payload ? payload.length : -1 };
      } catch (e) {
        failure = e;
        header = { tag, error: e instanceof Error ? e.message : String(e) };
      }
    }
    const got = decode(await this.group.broadcast(this.rank === 0 ? encode(header) : null, 0));
    if (got.tag !== tag) this.mismatch(`rank 0 sent '${got.tag}' while this rank waited for '${tag}'`);
    if (typeof got.error === 'string') {
      if (failure !== undefined) throw failure;
      throw new Error(`${this.label(0)} could not ${what}: ${got.error}`);
    }
    const size = got.size as number;
    if (size < 0) return undefined;
    const out = this.rank === 0 ? payload! : new Uint8Array(size);
    for (let off = 0; off < size; off += CHUNK) {
      const part = await this.group.broadcast(this.rank === 0 ? out.subarray(off, off + CHUNK) : null, 0);
      if (this.rank !== 0) out.set(part, off);
    }
    return out;
  }

  fail(why: string): void {
    this.group.abort(why);
  }

  close(): void {
    this.group.close();
  }
}
