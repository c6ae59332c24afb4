// The coordinator's thread during a run (Note [Thread placement] in thread-placement.ts): pinned when the run
// starts, its mask before restored when the last run in this thread ends.
import { native } from '../native/addon.js';

let held = 0;
let before: number[] | undefined;

/** The CPUs this thread may use when no run holds it pinned (what placement divides up). */
export function processCpus(): number[] {
  const a = native();
  if (!a.affinitySupported) return [];
  return before ?? a.threadCpus();
}

/**
 * Pins this thread to `cpus` for one run; returns the release, which restores the mask it had when the first of the
 * runs holding it began (runs of several runtimes at once: the first run's placement stays until the last ends).
 * Undefined `cpus`: nothing changes.
 */
export function holdCoordinator(cpus: number[] | undefined): () => void {
  if (!cpus) return () => undefined;
  const a = native();
  if (held === 0) {
    before = a.threadCpus();
    a.pinThread(cpus);
  }
  held++;
  let released = false;
  return () => {
    if (released) return;
    released = true;
    if (--held > 0 || !before) return;
    const mask = before;
    before = undefined;
    try {
      a.pinThread(mask);
    } catch {
      // the mask it had is no longer allowed (its cpuset shrank meanwhile): it stays where the run had it
    }
  };
}
