// GPU topology as `nvidia-smi topo -m` prints it, plus which pairs use P2P and the self-test's measured bandwidth.
// `node --import tsx src/topology.ts [--selftest]` prints it for this machine.
import os from 'node:os';
import { pathToFileURL } from 'node:url';
import { native, type NativeTopology, type P2PPairResult } from './native/addon.js';

export type Topology = NativeTopology;
export type { P2PPairResult };

const EMPTY: Topology = { gpus: [], links: [], source: 'none' };

/** GPUs and links of this machine; empty without the CUDA backend or a GPU (never throws). */
export function topology(): Topology {
  try {
    const t = native().topology();
    return t && Array.isArray(t.gpus) && Array.isArray(t.links) ? t : EMPTY;
  } catch {
    return EMPTY;
  }
}

/** Runs the P2P self-test over the given GPUs (default: all): see Note [P2P self-test] in cpp/cuda/p2p_selftest.cc. */
export function p2pSelfTest(indices?: number[]): P2PPairResult[] {
  const ids = indices ?? topology().gpus.map((g) => g.index);
  return native().p2pSelfTest(ids);
}

export interface FormatOptions {
  /** CPU tower count to mention when there is no GPU (default: available parallelism). */
  cpuCount?: number;
}

function grid(labels: string[], cell: (i: number, j: number) => string): string[] {
  const cells = labels.map((_, i) => labels.map((_, j) => cell(i, j)));
  const w = Math.max(5, ...labels.map((l) => l.length), ...cells.flat().map((c) => c.length)) + 2;
  const lines = [' '.repeat(w) + labels.map((l) => l.padStart(w)).join('')];
  labels.forEach((l, i) => lines.push(l.padEnd(w) + cells[i]!.map((c) => c.padStart(w)).join('')));
  return lines;
}

/**
 * A text matrix like `nvidia-smi topo -m` (cells X, NV#, PIX, PXB, PHB, NODE, SYS; P2P/NONE when NVML is not
 * available), a P2P yes/no matrix (what the transports will use), and, given self-test results, measured GB/s
 * (row = source, column = destination; FAIL for a pair whose data arrived corrupted).
 */
export function formatTopology(t: Topology, selfTest?: P2PPairResult[], opts: FormatOptions = {}): string {
  if (!t.gpus.length) {
    const n = Math.max(1, opts.cpuCount ?? os.availableParallelism());
    return `no CUDA devices; CPU towers: cpu:0..cpu:${n - 1} (host memory transport)`;
  }
  const labels = t.gpus.map((g) => `GPU${g.index}`);
  const pos = new Map(t.gpus.map((g, i) => [g.index, i]));
  const link = (i: number, j: number) => {
    const a = t.gpus[i]!.index;
    const b = t.gpus[j]!.index;
    return t.links.find((l) => (l.a === a && l.b === b) || (l.a === b && l.b === a));
  };
  const out: string[] = [];
  for (const g of t.gpus)
    out.push(`GPU${g.index}: ${g.name || '?'}, PCI ${g.pciBusId || '?'}, ${(g.memoryBytes / 2 ** 30).toFixed(1)} GiB`);
  out.push('');
  out.push(...grid(labels, (i, j) => {
    if (i === j) return 'X';
    const l = link(i, j);
    if (!l) return '?';
    if (l.kind === 'NVLINK') return `NV${l.nvlinks ?? ''}`;
    return l.kind;
  }));
  out.push('');
  out.push('Legend: X = self; NV# = NVLink (# links); PIX = at most one PCIe switch; PXB = several PCIe switches, no host bridge;');
  out.push('        PHB = through a PCIe host bridge; NODE = host bridges within a NUMA node; SYS = across NUMA nodes;');
  out.push(`        P2P / NONE = peer access yes / no (link kind unknown: ${t.source === 'nvml' ? 'NVML gave none' : 'NVML not loaded'})`);
  out.push('');
  out.push('P2P used by the transports (option TOWERLINE_P2P / setP2PEnabled, self-test):');
  out.push(...grid(labels, (i, j) => (i === j ? 'X' : link(i, j)?.p2p ? 'yes' : 'no')));
  if (selfTest && selfTest.length) {
    out.push('');
    out.push('Measured GB/s (self-test, row = source, column = destination; * = host-staged, FAIL = corrupted):');
    out.push(...grid(labels, (i, j) => {
      if (i === j) return 'X';
      const r = selfTest.find((s) => pos.get(s.src) === i && pos.get(s.dst) === j);
      if (!r) return '-';
      if (!r.ok) return 'FAIL';
      return `${r.gbps.toFixed(1)}${r.p2p ? '' : '*'}`;
    }));
    for (const r of selfTest.filter((s) => !s.ok)) out.push(`  GPU${r.src} -> GPU${r.dst}: ${r.detail}`);
  }
  return out.join('\n');
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const t = topology();
  const st = process.argv.includes('--selftest') && t.gpus.length > 1 ? p2pSelfTest() : undefined;
  console.log(formatTopology(t, st));
}
