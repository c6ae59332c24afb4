// The CLI's terminal output: on a terminal a progress bar on the last line, every message printed above it (the bar
// never swallows one: epoch results, checkpoints, warnings, signals, the final line); elsewhere plain lines. A closed
// stdout (`towerline train ... | head -1`) is noticed, never written again, and reported once to `onClosed`.
import cliProgress from 'cli-progress';
import { clearLine, cursorTo } from 'node:readline';

export class CliOutput {
  private readonly multi: cliProgress.MultiBar | undefined;
  private bar: cliProgress.SingleBar | undefined;
  private stdoutClosed = false;

  constructor(
    tty: boolean,
    private readonly onClosed: () => void,
  ) {
    process.stdout.on('error', () => this.closed());
    process.stderr.on('error', () => undefined); // a closed stderr must not crash the run either
    this.multi = tty
      ? new cliProgress.MultiBar(
          { format: 'step {value}/{total} [{bar}] loss {loss} | {eps} examples/sec | ETA {eta_formatted}', hideCursor: true, stream: process.stdout, gracefulExit: false, clearOnComplete: false },
          cliProgress.Presets.shades_classic,
        )
      : undefined;
  }

  private closed(): void {
    if (this.stdoutClosed) return;
    this.stdoutClosed = true;
    this.onClosed();
  }

  /** Whether stdout can still be written. */
  get open(): boolean {
    return !this.stdoutClosed;
  }

  /** A message line on stdout ('out') or stderr ('err'), above the bar when one shows. */
  line(text: string, stream: 'out' | 'err' = 'out'): void {
    if (stream === 'out' && this.stdoutClosed) return;
    const active = this.bar !== undefined && !this.stdoutClosed;
    if (active) {
      clearLine(process.stdout, 0);
      cursorTo(process.stdout, 0);
    }
    (stream === 'out' ? process.stdout : process.stderr).write(`${text}\n`);
    if (active) this.multi!.update(); // redraws the bar on the line below the message
  }

  /** The bar's state (a terminal only): starts it on first use. */
  progress(step: number, total: number, payload: { loss: string; eps: string }): void {
    if (!this.multi || this.stdoutClosed) return;
    this.bar ??= this.multi.create(total, 0, { loss: '-', eps: '-' });
    if (total && this.bar.getTotal() !== total) this.bar.setTotal(total);
    this.bar.update(step, payload);
  }

  /** Leaves the bar's last state as a line of its own; later messages print below it. */
  finish(): void {
    if (!this.multi || !this.bar) return;
    this.bar = undefined;
    if (!this.stdoutClosed) this.multi.stop();
  }
}
