// Shares that follow measured tower speed ('speed' shares): an exponential average of each tower's compute
// milliseconds per example (forward + backward) gives the weights of the next split. Exact either way: every shard
// is weighted by 1/global batch (Note [Shard weighting]).
import type { StepReply } from '../tower-port/protocol.js';

export class SpeedShares {
  private readonly msPerExample: number[] = [];

  constructor(private readonly towers: number) {}

  /** Split weights for the next step, or undefined (equal shares) until every tower has been measured. */
  weights(): number[] | undefined {
    if (this.msPerExample.length !== this.towers || this.msPerExample.some((m) => !(m > 0))) return undefined;
    return this.msPerExample.map((m) => 1 / m);
  }

  record(sizes: number[], replies: StepReply[]): void {
    replies.forEach((r, i) => {
      const ms = (r.timings.forward + r.timings.backward) / sizes[i]!;
      if (!(ms > 0)) return;
      const prev = this.msPerExample[i];
      this.msPerExample[i] = prev === undefined ? ms : 0.9 * prev + 0.1 * ms;
    });
  }
}
