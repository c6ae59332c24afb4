// `npm run bench [-- SECTION...]`: runs the benchmark sections (all, or those named), prints each figure beside its
// reference with the ratio, then a summary table, and writes bench/results/latest.json.
//
// To add a section: write a module exporting a `Section` (bench/section.ts) and list it in SECTIONS below.
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { native } from '../src/native/addon.js';
import { allreduce } from './allreduce.js';
import { cudaDevices, gpu } from './gpu.js';
import { mnistStep } from './mnist-step.js';
import { towersStep } from './towers-step.js';
import { cifarBench } from './cifar.js';
import { groupBench } from './group.js';
import { asyncBench } from './async.js';
import { blocksShardBench } from './blocks-shard.js'; // Z (issue 16): the block network with the sharded update
import { shardDefaultBench } from './shard-default.js'; // Z (issue 16): where the sharded update is on by default
import type { Row, Section } from './section.js';

const SECTIONS: Section[] = [mnistStep, allreduce, towersStep, cifarBench, blocksShardBench, shardDefaultBench, groupBench, asyncBench, gpu];
// Sections run only when named, unless their condition holds (gpu: where CUDA devices exist).
const ONLY_WHEN: Record<string, () => boolean> = { gpu: () => cudaDevices() > 0 };

const num = (v: number) => (Math.abs(v) >= 100 ? Math.round(v).toLocaleString('en-US') : v.toPrecision(4));

function rowLine(r: Row): string {
  const parts = [`${r.name}: ${num(r.value)} ${r.unit}`];
  if (r.reference) parts.push(`${r.reference.label}: ${num(r.reference.value)} ${r.unit}`);
  else parts.push('reference: n/a');
  if (r.ratio !== undefined) parts.push(`ratio ${ratioText(r.ratio)}`);
  if (r.target) parts.push(`target ${r.target}: ${r.met === undefined ? 'n/a' : r.met ? 'MET' : 'NOT MET'}`);
  return parts.join(' | ');
}

/** A ratio to 2 decimals, or 3 within 0.005 of 1 (0.9987 would read "1.00" beside a ">= 1.0" target it misses). */
function ratioText(x: number): string {
  return Math.abs(x - 1) < 0.005 ? x.toFixed(3) : x.toFixed(2);
}

function table(rows: { section: string; row: Row }[]): string {
  const head = ['section', 'figure', 'ours', 'reference', 'ratio', 'target'];
  const body = rows.map(({ section, row: r }) => [
    section,
    r.name.trim(),
    `${num(r.value)} ${r.unit}`,
    r.reference ? `${num(r.reference.value)}` : 'n/a',
    r.ratio !== undefined ? ratioText(r.ratio) : '-',
    r.target ? `${r.target} ${r.met === undefined ? '(n/a)' : r.met ? 'MET' : 'NOT MET'}` : '',
  ]);
  const w = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const fmt = (cells: string[]) => cells.map((c, i) => c.padEnd(w[i]!)).join(' | ');
  return [fmt(head), w.map((n) => '-'.repeat(n)).join('-|-'), ...body.map(fmt)].join('\n');
}

async function main(): Promise<void> {
  const wanted = process.argv.slice(2).filter((a) => !a.startsWith('-'));
  const known = new Set(SECTIONS.map((s) => s.name));
  const unknown = wanted.filter((w) => !known.has(w));
  if (unknown.length) {
    console.error(`unknown section(s) ${unknown.join(', ')}; available: ${[...known].join(', ')}`);
    process.exit(2);
  }
  const selected = wanted.length
    ? SECTIONS.filter((s) => wanted.includes(s.name))
    : SECTIONS.filter((s) => !ONLY_WHEN[s.name] || ONLY_WHEN[s.name]!());
  const gemm = native().gemmInfo();
  console.log(`towerline bench: node ${process.version}, ${cpus().length} x ${cpus()[0]?.model ?? '?'}, gemm ${gemm.impl}, ` +
    `load ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  console.log('Timings are noisy on a shared machine: each figure is the median of the best repetitions (see its note).\n');

  const results: { section: string; row: Row }[] = [];
  const failures: { section: string; error: string }[] = [];
  for (const s of selected) {
    console.log(`== ${s.name}${s.description ? `: ${s.description}` : ''}`);
    const t0 = Date.now();
    try {
      const rows = await s.run();
      for (const r of rows) {
        console.log(rowLine(r));
        if (r.note) console.log(`    (${r.note})`);
        results.push({ section: s.name, row: r });
      }
    } catch (e) {
      const msg = e instanceof Error ? (e.stack ?? e.message) : String(e);
      console.log(`  FAILED: ${msg}`);
      failures.push({ section: s.name, error: msg });
    }
    console.log(`   (${((Date.now() - t0) / 1000).toFixed(1)} s)\n`);
  }

  console.log('Summary');
  console.log(table(results));

  const outDir = join(dirname(fileURLToPath(import.meta.url)), 'results');
  mkdirSync(outDir, { recursive: true });
  const file = join(outDir, 'latest.json');
  writeFileSync(file, JSON.stringify({
    date: new Date().toISOString(),
    node: process.version,
    cpu: { count: cpus().length, model: cpus()[0]?.model },
    loadavg: loadavg(),
    gemm,
    sections: selected.map((s) => s.name),
    results: results.map(({ section, row }) => ({ section, ...row })),
    failures,
  }, null, 2) + '\n');
  console.log(`\nwrote ${file}`);
  if (failures.length) process.exitCode = 1;
}

await main();
