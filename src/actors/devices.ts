// Parses device lists: 'cpu:4' (four CPU towers), 'cpu:0,cpu:1', 'cuda:0', 'cuda:all', 'cuda:0x4' (4 towers on GPU 0).
import { native } from '../native/addon.js';
import { ConfigError } from '../util/validate.js';

export interface DeviceSlot {
  kind: string;
  index: number;
  label: string;
}

const HELP = "Write devices as 'cpu:N' (N CPU towers), a comma list like 'cpu:0,cpu:1', 'cuda:0', 'cuda:all' or 'cuda:0x4' (4 towers on GPU 0).";

export function parseDevices(spec: string | string[]): DeviceSlot[] {
  const items = (Array.isArray(spec) ? spec : spec.split(',')).map((s) => String(s).trim()).filter(Boolean);
  if (items.length === 0) throw new ConfigError(`devices: expected at least one device, given ${JSON.stringify(spec)}. ${HELP}`, 'devices');
  const out: DeviceSlot[] = [];
  const single = items.length === 1;
  for (const item of items) {
    const m = /^([a-z]+):(all|\d+)(?:x(\d+))?$/.exec(item);
    if (!m) throw new ConfigError(`devices: cannot read '${item}'. ${HELP}`, 'devices');
    const kind = m[1]!;
    const kinds = native().backendKinds();
    if (!kinds.includes(kind)) {
      throw new ConfigError(
        kind === 'cuda'
          ? `devices: '${item}' asks for a GPU, but no GPU is present: this addon was built without the CUDA backend ` +
              `(no nvcc or cuBLAS at build time; see docs/gpu.md). Use CPU towers instead, e.g. devices: 'cpu:2'.`
          : `devices: '${item}' names device kind '${kind}', but this build has ${kinds.join(', ')}.`,
        'devices',
      );
    }
    const available = native().deviceCount(kind);
    if (kind === 'cuda' && available === 0)
      throw new ConfigError(
        `devices: '${item}' asks for a GPU, but no GPU is present: the CUDA backend is built in, yet the driver reports ` +
          `no CUDA device on this machine (check nvidia-smi and CUDA_VISIBLE_DEVICES). Use CPU towers instead, e.g. devices: 'cpu:2'.`,
        'devices',
      );
    const reps = m[3] !== undefined ? Number(m[3]) : 1;
    if (reps < 1) throw new ConfigError(`devices: '${item}' asks for ${reps} towers; use x1 or more`, 'devices');
    if (kind === 'cpu' && single && m[3] === undefined && m[2] !== 'all') {
      // 'cpu:N' means N CPU towers: CPU devices are logical, one native thread each.
      const n = Number(m[2]);
      if (n < 1) throw new ConfigError(`devices: 'cpu:0' as a whole list means zero towers; write 'cpu:1' for one CPU tower`, 'devices');
      for (let i = 0; i < n; i++) out.push({ kind, index: i, label: `cpu:${i}` });
      continue;
    }
    const indices = m[2] === 'all' ? Array.from({ length: kind === 'cpu' ? 1 : available }, (_, i) => i) : [Number(m[2])];
    if (m[2] === 'all' && indices.length === 0) throw new ConfigError(`devices: '${item}' found no ${kind} devices`, 'devices');
    for (const index of indices) {
      if (kind !== 'cpu' && index >= available)
        throw new ConfigError(`devices: '${item}' asks for ${kind} device ${index}, but ${available} ${kind} device(s) exist`, 'devices');
      for (let k = 0; k < reps; k++) out.push({ kind, index, label: reps > 1 ? `${kind}:${index}#${k}` : `${kind}:${index}` });
    }
  }
  const seen = new Set<string>();
  for (const d of out) {
    if (seen.has(d.label)) throw new ConfigError(`devices: '${d.label}' is listed twice; to run several towers on one device write e.g. '${d.kind}:${d.index}x2'`, 'devices');
    seen.add(d.label);
  }
  return out;
}
