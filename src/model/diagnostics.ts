// What a tower can say about itself without moving tensors: replica hashes, the first tensor whose local gradient
// was not finite, the phase of the step running now.
import type { Backend, Op } from '../backend/backend.js';
import type { TowerMemory } from './memory.js';
import type { Network } from './network.js';
import { phaseOf, type STEP_PHASES } from './step-program.js';

export class TowerDiagnostics {
  private hashBufs: number[] | undefined;
  /** The program of the step running now (or last), for the watchdog's "which phase is it in?". */
  lastStepProgram: number | undefined;
  private readonly backend: Backend;

  constructor(
    private readonly mem: TowerMemory,
    private readonly net: Network,
    private readonly program: (key: string, build: () => Op[]) => number,
  ) {
    this.backend = mem.backend;
  }

  /**
   * 64-bit hashes of the exact bits of all weights and of each tensor (Note [Replica hash]), computed on the
   * device: only 8 bytes per tensor come back. Towers in lock-step have equal hashes.
   */
  async replicaHashes(): Promise<{ total: string; tensors: Array<[string, string]> }> {
    const { params } = this.net;
    const src = [{ h: this.net.weightArena, n: this.net.paramCount }, ...params.map((p) => ({ h: p.w, n: p.numel }))];
    const bufs = (this.hashBufs ??= src.map(() => this.mem.alloc(2, 'i32')));
    // hash_bits: x (N) -> h (2) i32, the low and high words
    await this.backend.run(this.program('hash', () => src.map((x, i): Op => ({ kernel: 'hash_bits', inputs: [x.h], outputs: [bufs[i]!], attrs: { N: x.n } }))));
    const hex = (h: number) => {
      const v = this.backend.copyOut(h);
      return ((BigInt(v[1]! >>> 0) << 32n) | BigInt(v[0]! >>> 0)).toString(16).padStart(16, '0');
    };
    return { total: hex(bufs[0]!), tensors: params.map((p, i) => [p.name, hex(bufs[i + 1]!)] as [string, string]) };
  }

  /** After a guard trip: the first tensor (in parameter order) whose local gradient was not finite, if any. */
  firstNonFiniteLocal(): string | undefined {
    for (const p of this.net.params) if (!Number.isFinite(this.backend.copyOut(p.localNormSq)[0]!)) return p.name;
    return undefined;
  }

  /** Which phase the current step is in, from its '@mark' progress; undefined when no step runs. */
  currentPhase(): (typeof STEP_PHASES)[number] | undefined {
    if (this.lastStepProgram === undefined) return undefined;
    const st = this.backend.status?.(this.lastStepProgram);
    return st ? phaseOf(st) : undefined;
  }
}
