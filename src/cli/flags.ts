// Errors on the command line speak in flags: the API's option names in an error's text become the CLI's flags, and
// the fields of a settings mismatch are annotated with the flag that sets them.
import { TowerlineError } from '../errors.js';

/** API option paths (as errors name them) and the flag that sets each. */
const FLAGS: Record<string, string> = {
  devices: '--devices',
  reduction: '--reduction',
  'reduction.algorithm': '--reduction',
  'reduction.chunkElems': '--reduction',
  maxTowers: '--max-towers',
  gemmThreads: '--gemm-threads',
  model: '--model',
  optimizer: '--optimizer',
  'optimizer.type': '--optimizer',
  'optimizer.lr': '--lr',
  'optimizer.lr.lr': '--lr',
  'optimizer.lr.decayRate': '--decay-rate',
  'optimizer.lr.decaySteps': '--decay-steps',
  'optimizer.lr.staircase': '--staircase',
  'optimizer.momentum': '--momentum',
  clipNorm: '--clip-norm',
  emaDecay: '--ema',
  seed: '--seed',
  data: '--dataset',
  'data.kind': '--dataset',
  'data.batchSize': '--batch-size',
  'data.dir': '--data-dir',
  epochs: '--epochs',
  steps: '--steps',
  evaluate: '--eval',
  'checkpoint.dir': '--checkpoint-dir',
  'checkpoint.everySteps': '--checkpoint-every',
  'checkpoint.keep': '--keep',
  'checkpoint.resume': '--resume',
  'checkpoint.overwrite': '--overwrite-checkpoints',
  logDir: '--log-dir',
  histogramsEvery: '--histograms-every',
  traceFile: '--trace',
  memory: '--batch-size',
};

/** The flag that sets an API option path ('train options.data.batchSize' or 'data.batchSize'), if any. */
export function flagOf(path: string): string | undefined {
  const p = path.replace(/^(?:train|runtime) options\.?/, '');
  for (let q = p; q; q = q.includes('.') ? q.slice(0, q.lastIndexOf('.')) : '') if (FLAGS[q]) return FLAGS[q];
  return undefined;
}

// Phrases of the API's own wording, replaced whole before single names.
const PHRASES: Array<[RegExp, string]> = [
  [/checkpoint\.resume: 'if-present'/g, '--resume-if-present'],
  [/ \(CLI: (--[a-z-]+)\)/g, ''],
  [/maxTowers(?= \(CLI)/g, '--max-towers'],
  [/\s*\(for a partial last batch, use lastBatch: 'drop'\)/g, ''],
  [/^Example: .*$/gm, ''],
  [/^Use \{ algorithm: .*$/gm, ''],
];

// Names that only ever mean the option (dotted paths, camelCase names): replaced wherever they appear.
const NAMES = Object.keys(FLAGS)
  .filter((k) => k.includes('.') || /[A-Z]/.test(k))
  .sort((a, b) => b.length - a.length);

/** An error's message for the command line: API names become flags, setting paths get their flag alongside. */
export function cliMessage(e: unknown): string {
  if (!(e instanceof Error)) return String(e);
  let m = e.message;
  for (const [re, to] of PHRASES) m = m.replace(re, to);
  m = m.replace(/(?:train|runtime) options\.([\w.[\]]+)/g, (all, path: string) => flagOf(path) ?? all);
  m = m.replace(/invalid (?:train|runtime) options:\n {2}/, '');
  // A settings mismatch names each field; say which flag sets it ("optimizer.lr (--lr): saved 0.1, given 0.2").
  m = m.replace(/^( {2})([\w.[\]]+): saved /gm, (all, indent: string, path: string) => {
    const flag = flagOf(path);
    return flag ? `${indent}${path} (${flag}): saved ` : all;
  });
  for (const name of NAMES) m = m.replace(new RegExp(`(?<![\\w.(-])${name.replace(/[.[\]]/g, '\\$&')}(?![\\w(])(?! \\(--)`, 'g'), FLAGS[name]!);
  m = m.replace(/^devices: /, '--devices: ');
  const field = e instanceof TowerlineError && 'field' in e && typeof e.field === 'string' ? e.field : undefined;
  const flag = field ? flagOf(field) : undefined;
  m = m.trim();
  return flag && !m.startsWith(flag) && !m.includes(`${flag}:`) ? `${flag}: ${m}` : m;
}
