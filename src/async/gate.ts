// The staleness gate: stale-synchronous parallel (SSP) in a few lines. A tower may start its next iteration only
// while it is at most maxStaleness iterations ahead of the slowest live tower (Note [Staleness]).
//
// Note [Staleness]: each tower's clock counts its pushes the server has taken. A tower at clock k may start
// iteration k once every live tower's clock is at least k - s (s = maxStaleness); so with s = 0 the towers run in
// lock-step rounds (every tower of round k pulls the same weights, after the last push of round k-1), with s = 4
// a fast tower keeps going until it is 4 rounds ahead, and with s = Infinity nobody ever waits (TF 1's async). The
// server measures, per push, how many rounds ahead of the slowest its tower was when it pulled (its `staleness`,
// never more than s) and how many pushes landed between that pull and this push (its `lag`, at most
// (towers - 1) * (2s + 1) while the bound holds); cpp/ps/server.h records both. A dropped tower no longer holds the
// others back.
export class StalenessGate {
  private readonly clocks: number[];
  private readonly alive: boolean[];
  private waiters: Array<() => void> = [];
  private closed = false;

  constructor(
    towers: number,
    private readonly maxStaleness: number,
  ) {
    this.clocks = new Array<number>(towers).fill(0);
    this.alive = new Array<boolean>(towers).fill(true);
  }

  /** The smallest clock of the live towers (Infinity when none is left). */
  minClock(): number {
    let m = Infinity;
    this.clocks.forEach((c, r) => {
      if (this.alive[r]) m = Math.min(m, c);
    });
    return m;
  }

  clock(rank: number): number {
    return this.clocks[rank]!;
  }

  /** How many rounds tower `rank` is ahead of the slowest live tower. */
  lead(rank: number): number {
    return this.clocks[rank]! - this.minClock();
  }

  canStart(rank: number): boolean {
    return this.closed || !this.alive[rank] || this.lead(rank) <= this.maxStaleness;
  }

  /** Resolves when tower `rank` may start its next iteration (at once if it may now), or when the gate closes. */
  wait(rank: number): Promise<void> {
    if (this.canStart(rank)) return Promise.resolve();
    return new Promise((resolve) => {
      const check = () => (this.canStart(rank) ? resolve() : this.waiters.push(check));
      this.waiters.push(check);
    });
  }

  /** Tower `rank`'s push was taken: its clock moves on (the server's clock for it, when given). */
  advance(rank: number, clock = this.clocks[rank]! + 1): void {
    this.clocks[rank] = clock;
    this.wake();
  }

  /** Tower `rank` is gone: it no longer holds the others back. */
  drop(rank: number): void {
    this.alive[rank] = false;
    this.wake();
  }

  isAlive(rank: number): boolean {
    return this.alive[rank]!;
  }

  /** Live towers. */
  get live(): number {
    return this.alive.filter(Boolean).length;
  }

  /** Releases every waiter (the run is ending); wait() resolves at once from now on. */
  close(): void {
    this.closed = true;
    this.wake();
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
}
