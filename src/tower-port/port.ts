// The tower port: the one interface through which the coordinator drives a tower, wherever the tower lives (a
// worker thread today, this thread for tests and embedding, another process next). Buffer handles stay behind it.
import type { ReferenceBackend } from '../reference/reference-backend.js';
import type { TowerError } from '../errors.js';
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
  TowerInfo,
} from './protocol.js';

/**
 * How a group reaches a tower's arenas (read only by src/group/): native buffer handles (any thread of this
 * process), or a reference backend's handles (this thread).
 */
export type GroupEndpoint = { kind: 'native'; arenas: ArenaHandles } | { kind: 'reference'; backend: ReferenceBackend; arenas: ArenaHandles };

export interface TowerPort {
  /** The device label errors and events name this tower by ('cpu:0', 'cuda:1#2'). */
  readonly device: string;
  /** Settles (never rejects) with the cause when the tower dies; pending calls fail with it too. */
  readonly death: Promise<TowerError>;
  /** Builds (or rebuilds) the tower; forgets compiled steps, data sets and group slots. */
  build(req: BuildRequest): Promise<TowerInfo>;
  /** For the group module only (src/group/): where this tower's arenas are. */
  endpoint(): GroupEndpoint;
  /** Tells the tower its places in the group's collectives (after build; again after a group is rebuilt). */
  joinGroup(slots: GroupSlots): Promise<void>;
  initWeights(seed: number): Promise<void>;
  /** Joins the group's weight broadcast from tower 0 (copies only), then restarts the EMA. */
  broadcastWeights(): Promise<void>;
  uploadDataset(key: string, set: SharedDataset, transform?: ImageTransform): Promise<void>;
  /**
   * The one step path: this tower's shard through its compiled step program, with an optional fault armed for
   * this step only (tests: the same program and the same call as production). Rejects with a TowerError naming the
   * device after `deadlineMs` or when the tower fails. `chained`: launched behind a step whose reply is not yet
   * consumed (Note [Pipelined steps]); its deadline starts when that step settles.
   */
  step(req: StepRequest, deadlineMs: number, fault?: FaultSpec, chained?: boolean): Promise<StepReply>;
  /** The phase of the step running now ('forward', 'reduce', ...) for the watchdog; undefined when idle. */
  phase(): Promise<string | undefined>;
  /** After a guard trip: the first tensor whose local (pre-reduce) gradient was not finite. */
  firstNonFinite(): Promise<string | undefined>;
  replicaHashes(): Promise<ReplicaHashes>;
  /** Copies of the weights ('w') or the last gradients ('g'), by parameter name (never on the hot path). */
  readWeights(which: 'w' | 'g'): Promise<NamedTensors>;
  readState(): Promise<StateTensor[]>;
  writeState(tensors: NamedTensors): Promise<void>;
  evaluate(key: string, useEma: boolean): Promise<EvalReply>;
  /** While held (a running train()), the tower keeps the process alive; an idle tower lets it exit. */
  hold(active: boolean): void;
  /** Frees the device; always returns, also for a dead tower. */
  close(): Promise<void>;
}
