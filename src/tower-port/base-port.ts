// What every tower port does the same way: forwarding control calls to its tower's TowerHost (however it reaches
// it) and stepping through the one StepLauncher. Ports differ only in how they reach the host and the device.
import type { TowerError } from '../errors.js';
import type { GroupEndpoint, TowerPort } from './port.js';
import type { StepLauncher } from './step-launcher.js';
import type {
  ArenaHandles,
  BuildRequest,
  EvalReply,
  FaultSpec,
  GroupSlots,
  ImageTransform,
  NamedTensors,
  ReplicaHashes,
  SharedDataset,
  StateTensor,
  StepReply,
  StepRequest,
  TowerActorApi,
  TowerInfo,
} from './protocol.js';

export type Invoke = <K extends keyof TowerActorApi>(method: K, ...args: Parameters<TowerActorApi[K]>) => Promise<Awaited<ReturnType<TowerActorApi[K]>>>;

export abstract class BasePort implements TowerPort {
  abstract readonly death: Promise<TowerError>;
  protected abstract readonly launcher: StepLauncher;
  protected arenas: ArenaHandles | undefined;

  constructor(
    readonly device: string,
    protected readonly invoke: Invoke,
  ) {}

  abstract endpoint(): GroupEndpoint;
  abstract hold(active: boolean): void;
  abstract close(): Promise<void>;

  protected builtArenas(): ArenaHandles {
    if (!this.arenas) throw new Error(`tower on ${this.device}: build() the tower before joining a group`);
    return this.arenas;
  }

  async build(req: BuildRequest): Promise<TowerInfo> {
    this.launcher.reset();
    this.arenas = undefined;
    const { gradArena, weightArena, ...info } = await this.invoke('build', req);
    this.arenas = { gradArena, weightArena };
    return info;
  }

  joinGroup(slots: GroupSlots): Promise<void> {
    this.launcher.reset();
    return this.invoke('joinGroup', slots);
  }

  step(req: StepRequest, deadlineMs: number, fault?: FaultSpec): Promise<StepReply> {
    return this.launcher.step(req, deadlineMs, fault);
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

  uploadDataset(key: string, set: SharedDataset, transform?: ImageTransform): Promise<void> {
    return this.invoke('uploadDataset', key, set, transform);
  }

  firstNonFinite(): Promise<string | undefined> {
    return this.invoke('firstNonFinite');
  }

  replicaHashes(): Promise<ReplicaHashes> {
    return this.invoke('replicaHashes');
  }

  readWeights(which: 'w' | 'g'): Promise<NamedTensors> {
    return this.invoke('readWeights', which);
  }

  readState(): Promise<StateTensor[]> {
    return this.invoke('readState');
  }

  writeState(tensors: NamedTensors): Promise<void> {
    return this.invoke('writeState', tensors);
  }

  evaluate(key: string, useEma: boolean): Promise<EvalReply> {
    return this.invoke('evaluate', key, useEma);
  }
}
