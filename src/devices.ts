// Device lists: one grammar for every device kind (Note [Device grammar]).
import { native } from './native/addon.js';
import { ConfigError } from './errors.js';

/** The most towers a runtime starts unless told otherwise (RuntimeOptions.maxTowers, CLI --max-towers). */
export const DEFAULT_MAX_TOWERS = 64;

/** One tower's place: the device kind, the device index, and the label errors and events name it by. */
export interface DeviceSlot {
  kind: string;
  index: number;
  label: string;
}

// Note [Device grammar]: a device list is a comma list (or an array) of items, and every item means the same for
// every kind:
//   kind:i      one tower on device i            'cpu:0', 'cuda:1'
//   kind:i-j    one tower on each of devices i..j 'cpu:0-2' (three CPU towers), 'cuda:0-3'
//   kind:all    one tower on every device         'cuda:all' (not for cpu: CPU devices are logical)
//   kind*n      n towers on devices 0..n-1        'cpu*3' = 'cpu:0-2'
//   ...xk       k towers on each device named     'cuda:0x4' (four towers sharing GPU 0), 'cpu:0-1x2'
// CPU devices are logical (each its own native thread on the host; deviceCount('cpu') is a soft limit), GPUs are
// physical. A tower's label is 'kind:i', or 'kind:i#k' when k towers share device i. The one spelling whose meaning
// changed, a lone 'cpu:N' with N >= 2 (it used to mean N towers), is refused with the spelling to use instead.
export const DEVICE_HELP =
  "Write devices as 'cpu:0' (CPU device 0), 'cpu*3' or 'cpu:0-2' (three CPU towers), 'cuda:1' (GPU 1), " +
  "'cuda:all' (every GPU), 'cuda:0x4' (four towers on GPU 0), or a comma list like 'cpu:0,cpu:1'.";

const ITEM = /^([a-z]+)(?::(?:(all)|(\d+)(?:-(\d+))?)|\*(\d+))(?:x(\d+))?$/;

function checkKind(kind: string, item: string): number {
  const kinds = native().backendKinds();
  if (!kinds.includes(kind)) {
    throw new ConfigError(
      kind === 'cuda'
        ? `devices: '${item}' asks for a GPU, but no GPU is present: this addon was built without the CUDA backend ` +
            `(no nvcc or cuBLAS at build time; see docs/gpu.md). Use CPU towers instead, e.g. devices: 'cpu*2'.`
        : `devices: '${item}' names device kind '${kind}', but this build has ${kinds.join(', ')}. ${DEVICE_HELP}`,
      'devices',
    );
  }
  const available = native().deviceCount(kind);
  if (kind === 'cuda' && available === 0)
    throw new ConfigError(
      `devices: '${item}' asks for a GPU, but no GPU is present: the CUDA backend is built in, yet the driver reports ` +
        `no CUDA device on this machine (check nvidia-smi and CUDA_VISIBLE_DEVICES). Use CPU towers instead, e.g. devices: 'cpu*2'.`,
      'devices',
    );
  return available;
}

/** The range of devices an item names, [lo, hi], before repetition (nothing is materialised: see towerBound). */
function itemRange(item: string, m: RegExpExecArray, kind: string, available: number): [number, number] {
  const [, , all, first, last, count] = m;
  if (all !== undefined) {
    if (kind === 'cpu')
      throw new ConfigError(`devices: '${item}': CPU devices are logical (any number share the host), so there is no 'all'; write 'cpu*N' for N CPU towers`, 'devices');
    return [0, available - 1];
  }
  const lo = count !== undefined ? 0 : Number(first);
  const hi = count !== undefined ? Number(count) - 1 : last !== undefined ? Number(last) : lo;
  if (count !== undefined && Number(count) < 1) throw new ConfigError(`devices: '${item}' asks for ${count} towers; write '${kind}*1' or more`, 'devices');
  if (hi < lo) throw new ConfigError(`devices: '${item}' is an empty range; write the lower index first, e.g. '${kind}:${hi}-${lo}'`, 'devices');
  return [lo, hi];
}

function checkIndex(item: string, kind: string, hi: number, available: number): void {
  if (hi >= available)
    throw new ConfigError(`devices: '${item}' asks for ${kind} device ${hi}, but ${available} ${kind} device(s) exist (${kind}:0..${kind}:${available - 1})`, 'devices');
}

/** The tower limit, checked on counts before any slot exists (so 'cpu*99999999' costs nothing but this error). */
function towerBound(spec: string | string[], towers: number, maxTowers: number): void {
  if (towers <= maxTowers) return;
  const given = Array.isArray(spec) ? spec.join(',') : spec;
  throw new ConfigError(
    `devices: '${given}' asks for ${towers} towers, more than the limit of ${maxTowers} (each tower is a worker thread ` +
      `with its own copy of the model, its optimizer state and the data set). Use fewer towers, or raise the limit with ` +
      `maxTowers (CLI: --max-towers) if you mean it.`,
    'devices',
  );
}

/**
 * Parses a device list into one slot per tower (Note [Device grammar]); every error is a ConfigError on 'devices'.
 * More than `maxTowers` towers (default 64) is an error before anything is allocated.
 */
export function parseDevices(spec: string | string[], opts: { maxTowers?: number } = {}): DeviceSlot[] {
  const maxTowers = opts.maxTowers ?? DEFAULT_MAX_TOWERS;
  const items = (Array.isArray(spec) ? spec : spec.split(',')).map((s) => String(s).trim()).filter(Boolean);
  if (items.length === 0) throw new ConfigError(`devices: expected at least one device, given ${JSON.stringify(spec)}. ${DEVICE_HELP}`, 'devices');
  const old = items.length === 1 ? /^cpu:(\d+)$/.exec(items[0]!) : null;
  if (old && Number(old[1]) >= 2) {
    const n = Number(old[1]);
    throw new ConfigError(
      `devices: '${items[0]}' now means CPU device ${n} (one tower); it used to mean ${n} CPU towers. ` +
        `For ${n} CPU towers write 'cpu*${n}' (or 'cpu:0-${n - 1}'); for one tower on CPU device ${n} write 'cpu:${n}x1'.`,
      'devices',
    );
  }
  const parsed = items.map((item) => {
    const m = ITEM.exec(item);
    if (!m) throw new ConfigError(`devices: cannot read '${item}'. ${DEVICE_HELP}`, 'devices');
    const kind = m[1]!;
    const available = checkKind(kind, item);
    const reps = m[6] !== undefined ? Number(m[6]) : 1;
    if (reps < 1) throw new ConfigError(`devices: '${item}' asks for ${reps} towers per device; use x1 or more`, 'devices');
    const [lo, hi] = itemRange(item, m, kind, available);
    return { item, kind, available, reps, lo, hi };
  });
  towerBound(spec, parsed.reduce((n, p) => n + (p.hi - p.lo + 1) * p.reps, 0), maxTowers);
  const out: DeviceSlot[] = [];
  for (const { item, kind, available, reps, lo, hi } of parsed) {
    checkIndex(item, kind, hi, available);
    for (let index = lo; index <= hi; index++)
      for (let k = 0; k < reps; k++) out.push({ kind, index, label: reps > 1 ? `${kind}:${index}#${k}` : `${kind}:${index}` });
  }
  const seen = new Set<string>();
  for (const d of out) {
    if (seen.has(d.label)) throw new ConfigError(`devices: '${d.label}' is listed twice; to run several towers on one device write e.g. '${d.kind}:${d.index}x2'`, 'devices');
    seen.add(d.label);
  }
  return out;
}
