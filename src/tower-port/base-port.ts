// What every tower port does the same way: forwarding control calls to its tower's TowerHost (however it reaches
// it) and stepping through the one StepLauncher. Ports differ only in how they reach the host and the device.
import type { TowerError } from '../errors.js';
import type { GroupEndpoint, TowerPort } from './port.js';
import type { StepLauncher } from './step-launcher.js';
import type * as P from './protocol.js';

export type Invoke = <K extends keyof P.TowerActorApi>(method: K, ...args: Parameters<P.TowerActorApi[K]>) => Promise<Awaited<ReturnType<P.TowerActorApi[K]>>>;

export abstract class BasePort implements TowerPort {
  abstract readonly death: Promise<TowerError>;
  protected abstract readonly launcher: StepLauncher;
  protected arenas: P.ArenaHandles | undefined;

  constructor(
    readonly device: string,
    protected readonly invoke: Invoke,
  ) {}

  abstract endpoint(): GroupEndpoint;
  abstract hold(active: boolean): void;
  abstract close(): Promise<void>;

  protected builtArenas(): P.ArenaHandles {
    if (!this.arenas) throw new Error(`tower on ${this.device}: build() the tower before joining a group`);
    return this.arenas;
  }

  async build(req: P.BuildRequest): Promise<P.TowerInfo> {
    this.launcher.reset();
    this.arenas = undefined;
    const { gradArena, weightArena, shardBuffers, ...info } = await this.invoke('build', req);
    this.arenas = { gradArena, weightArena, ...(shardBuffers ? { shardBuffers } : {}) };
    return info;
  }

  joinGroup(slots: P.GroupSlots): Promise<void> {
    this.launcher.reset();
    return this.invoke('joinGroup', slots);
  }

  step(req: P.StepRequest, deadlineMs: number, fault?: P.FaultSpec, chained?: boolean): Promise<P.StepReply> {
    return this.launcher.step(req, deadlineMs, fault, chained);
  }

  async phase(): Promise<string | undefined> {
    return this.launcher.phase();
  }

  initWeights(seed: number): Promise<void> {
    return this.invoke('initWeights', seed);
  }

  broadcastWeights(): Promise<void> {
    return this.invoke('broadcastWeights');
  }

  uploadDataset(key: string, set: P.SharedDataset, transform?: P.ImageTransform): Promise<void> {
    return this.invoke('uploadDataset', key, set, transform);
  }

  firstNonFinite(): Promise<string | undefined> {
    return this.invoke('firstNonFinite');
  }

  replicaHashes(): Promise<P.ReplicaHashes> {
    return this.invoke('replicaHashes');
  }

  readWeights(which: 'w' | 'g'): Promise<P.NamedTensors> {
    return this.invoke('readWeights', which);
  }

  readState(): Promise<P.StateTensor[]> {
    return this.invoke('readState');
  }

  writeState(tensors: P.NamedTensors): Promise<void> {
    return this.invoke('writeState', tensors);
  }

  evaluate(key: string, useEma: boolean): Promise<P.EvalReply> {
    return this.invoke('evaluate', key, useEma);
  }
}
