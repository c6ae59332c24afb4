// The shape of a benchmark section: bench/run.ts runs sections by name and prints their rows side by side.

/** One measured figure, with the reference it is compared against where there is one. */
export interface Row {
  name: string;
  value: number;
  unit: string;
  /** The same figure measured (in the same run) on the reference implementation. */
  reference?: { value: number; label: string };
  /** ours / reference for throughputs (higher is better), reference / ours for times. */
  ratio?: number;
  /** Human-readable target, e.g. 'ratio >= 1.0'. */
  target?: string;
  met?: boolean;
  /** Free-form detail printed after the row (configuration, repetitions). */
  note?: string;
}

export interface Section {
  name: string;
  /** One line on what the section measures. */
  description?: string;
  run(): Promise<Row[]>;
}

/** Median of the best `keep` values of `xs` (higher is better): robust to the slow outliers of a noisy machine. */
export function medianOfBest(xs: number[], keep = 3): number {
  if (xs.length === 0) throw new Error('medianOfBest: no samples');
  const best = [...xs].sort((a, b) => b - a).slice(0, Math.max(1, Math.min(keep, xs.length)));
  return best[Math.floor((best.length - 1) / 2)]!;
}

/** The middle value of `xs` (the upper of the two middles for an even count). */
export function median(xs: number[]): number {
  if (xs.length === 0) throw new Error('median: no samples');
  return [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
}
