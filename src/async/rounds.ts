// Lock-step rounds (maxStaleness 0): the round's pushes wait until every live tower has computed, then go in batch
// order (Note [Lock-step rounds]).
//
// Note [Lock-step rounds]: with maxStaleness 0 the staleness gate alone lets every tower of round k start once round
// k-1's pushes were all taken, but a fast tower could push its round-k gradient before a slow one had pulled, and a
// round's pushes landed in the order the towers finished: the weights a round's towers computed on, and the order
// its updates were applied in (momentum and Adam do not commute), depended on timing, and two runs with the same
// seed differed. So a tower that has computed its round's gradient parks; once every live tower has parked (a tower
// with no batch left to take does not count), the parked batches are pushed one at a time in ascending batch
// number, each after the one before it was taken or given back. Every tower of a round thus pulls the weights left
// by the round before, the run applies batch 0, 1, 2, ... in order, and a run is reproducible bit for bit (the
// towers compute the same bits for the same batch on the same weights, whatever their GEMM threads: Note [GEMM
// threads] in cpp/cpu/gemm.cc). The price: a round's pushes run one after another after its slowest gradient,
// where the faster towers' pushes used to overlap it. A tower dropped while parked gives its batch back when its
// turn comes; a batch given back is handed out again in a later round, first in its order. A failure releases
// every parked tower (the loop checks for it after its turn).
export class LockStepRounds {
  private readonly parked = new Map<number, () => void>();
  /** The round being pushed: its batch numbers, ascending; the first one's turn has come. */
  private turns: number[] = [];
  private idle = 0;
  private closed = false;

  /** `live`: how many towers are alive now. */
  constructor(private readonly live: () => number) {}

  /** Batch `n` has been computed: resolves when it is n's turn to push (or the rounds were closed). */
  park(n: number): Promise<void> {
    if (this.closed) return Promise.resolve();
    const turn = new Promise<void>((resolve) => this.parked.set(n, resolve));
    this.check();
    return turn;
  }

  /** Batch `n`'s turn is over: its push was taken, or it was given back. */
  done(n: number): void {
    const i = this.turns.indexOf(n);
    if (i < 0) return;
    this.turns.splice(i, 1);
    if (i === 0) this.next();
    this.check();
  }

  /** A tower found no batch to take and waits (it holds no round back), or stops waiting. */
  waiting(on: boolean): void {
    this.idle += on ? 1 : -1;
    this.check();
  }

  /** Something changed that a round may be waiting on (a tower was dropped). */
  check(): void {
    if (this.closed || this.turns.length > 0 || this.parked.size === 0) return;
    if (this.parked.size + this.idle < this.live()) return;
    this.turns = [...this.parked.keys()].sort((a, b) => a - b);
    this.next();
  }

  /** Releases every parked tower, now and from now on (the run failed or ended). */
  close(): void {
    this.closed = true;
    for (const resolve of this.parked.values()) resolve();
    this.parked.clear();
    this.turns = [];
  }

  private next(): void {
    const n = this.turns[0];
    if (n === undefined) return;
    const resolve = this.parked.get(n);
    this.parked.delete(n);
    resolve?.();
  }
}
