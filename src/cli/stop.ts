// How a training run ends early from outside: SIGINT (Ctrl+C), SIGTERM and SIGHUP all stop it after the current step
// and write a checkpoint when a directory is set, then the CLI exits with 128 + the signal's number; a closed stdout
// (`towerline train ... | head -1`) does the same quietly and exits 141, as SIGPIPE would have.
import { constants } from 'node:os';

export const STOP_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
export type StopSignal = (typeof STOP_SIGNALS)[number];

/** The exit code of a run stopped by `signal` (128 + its number), or by a closed stdout (141). */
export function exitCodeOf(why: StopSignal | 'EPIPE'): number {
  return 128 + (why === 'EPIPE' ? constants.signals.SIGPIPE : constants.signals[why]);
}

/** Calls `stop` on the first stop signal (later ones only call `again`); returns the function that uninstalls it. */
export function onStopSignals(stop: (signal: StopSignal) => void, again: (signal: StopSignal) => void): () => void {
  let stopped = false;
  const handlers = STOP_SIGNALS.map((signal) => {
    const h = () => {
      if (stopped) return again(signal);
      stopped = true;
      stop(signal);
    };
    process.on(signal, h);
    return [signal, h] as const;
  });
  return () => {
    for (const [signal, h] of handlers) process.off(signal, h);
  };
}
