// ProcessGroup: the processes of one multi-process run, met at a rendezvous, with collectives among them on Gloo.
// A thin typed layer over the native group (cpp/group/): options are validated here, the token stays here.
import { native, type NativeGroupInfo } from '../native/addon.js';
import { resolveGroupOptions, type GroupOptions, type GroupOptionsInput } from './options.js';
import { assertGroupsAvailable } from './support.js';
import { tokenProofs } from './token.js';

export interface Peer {
  rank: number;
  localRank: number;
  hostname: string;
  address: string;
  pid: number;
}

export class ProcessGroup {
  private control: Promise<unknown> = Promise.resolve();
  private closed = false;

  private constructor(
    readonly handle: number,
    readonly options: Readonly<Omit<GroupOptions, 'token'>>,
    readonly peers: readonly Peer[],
  ) {}

  /**
   * Joins the run: `options` (explicit fields win) over the environment a launcher set (src/group/options.ts).
   * Resolves once every rank joined and every context connected; rejects within the rendezvous deadline naming
   * the ranks that never arrived, or naming a rank whose run token differs.
   */
  static async create(options: Partial<GroupOptionsInput> = {}, env: Record<string, string | undefined> = process.env): Promise<ProcessGroup> {
    const o = resolveGroupOptions(options, env);
    assertGroupsAvailable();
    const { token, ...rest } = o;
    const handle = await native().createGroup({
      rank: o.rank,
      size: o.worldSize,
      localRank: o.localRank,
      localSize: o.localWorldSize,
      slots: o.slots,
      runId: o.runId,
      rdzv: o.rdzv,
      proofs: tokenProofs(token ?? '', o.runId, o.worldSize),
      address: o.address,
      iface: o.iface,
      hostname: o.hostname,
      timeoutMs: o.timeoutMs,
      rendezvousTimeoutMs: o.rendezvousTimeoutMs,
    });
    return new ProcessGroup(handle, Object.freeze(rest), Object.freeze(native().groupInfo(handle).peers));
  }

  get rank(): number {
    return this.options.rank;
  }
  get worldSize(): number {
    return this.options.worldSize;
  }
  get slots(): number {
    return this.options.slots;
  }

  /** The first cause of failure (every later op fails with it), or undefined while the group is healthy. */
  get stoppedWith(): string | undefined {
    if (this.closed) return 'closed';
    return this.info().stoppedWith || undefined;
  }

  info(): NativeGroupInfo {
    return native().groupInfo(this.handle);
  }

  /** Resolves once every rank reached it; rejects by the deadline naming the rank that did not. */
  barrier(timeoutMs?: number): Promise<void> {
    return this.inOrder(() => native().groupBarrier(this.handle, timeoutMs));
  }

  /** Every rank's bytes, in rank order (replica hashes, settings agreement). */
  allGather(bytes: Uint8Array, timeoutMs?: number): Promise<Uint8Array[]> {
    return this.inOrder(() => native().groupAllGather(this.handle, bytes, timeoutMs));
  }

  /** `root`'s bytes on every rank (other ranks pass null). */
  broadcast(bytes: Uint8Array | null, root: number, timeoutMs?: number): Promise<Uint8Array> {
    return this.inOrder(() => native().groupBroadcast(this.handle, bytes, root, timeoutMs));
  }

  /** Sums [offset, offset+length) of an f32 buffer over every process on `slot`'s context, on its device thread. */
  allReduce(buffer: number, slot: number, offset: number, length: number): Promise<void> {
    return native().groupAllReduce(this.handle, buffer, slot, offset, length);
  }

  /** Copies [offset, offset+length) of an f32 buffer from process `root` to every other process (bytes, not sums). */
  broadcastBuffer(buffer: number, slot: number, offset: number, length: number, root: number): Promise<void> {
    return native().groupBroadcastBuffer(this.handle, buffer, slot, offset, length, root);
  }

  /** Runs communicator `comm`'s remote steps (hierarchical schedules) on this group's slot contexts. */
  attach(comm: number): void {
    native().attachCommGroup(comm, this.handle);
  }

  /** Stops the group: every rank's ops in flight or later fail, naming this rank and `why`. */
  abort(why: string): void {
    if (!this.closed) native().abortGroup(this.handle, why);
  }

  /** Closes every connection; returns at once, never throws, idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    native().closeGroup(this.handle);
  }

  // Control-context ops must run in the same order on every rank: one at a time, in call order.
  private inOrder<T>(op: () => Promise<T>): Promise<T> {
    const next = this.control.then(op, op);
    this.control = next.catch(() => undefined);
    return next;
  }
}
