// Prints the benchmark part of the GPU check's summary.md (tools/gpu-check.sh): the 'gpu' section's rows of a
// bench results file (bench/run.ts's latest.json) as a markdown table, ours beside the reference with the ratio, then
// the two targets as met / not met / not measured.
// Usage: node tools/gpu-summary.mjs BENCH_JSON   (a missing or unreadable file: every target "not measured")
import { readFileSync } from 'node:fs';

// The target labels the bench rows carry (bench/gpu.ts MNIST_TARGET, bench/gpu-allreduce.ts ALLREDUCE_TARGET).
const TARGETS = ['MNIST step >= 1.0x PyTorch examples/s', '4-tower all-reduce >= 60% of D2D copy at 256 MB'];

const num = (v) => (Math.abs(v) >= 100 ? Math.round(v).toLocaleString('en-US') : v.toPrecision(4));

function load(file) {
  try {
    const j = JSON.parse(readFileSync(file, 'utf8'));
    return { rows: (j.results ?? []).filter((r) => r.section === 'gpu'), failures: (j.failures ?? []).filter((f) => f.section === 'gpu') };
  } catch (e) {
    return { rows: [], failures: [], error: `no benchmark results (${e.code ?? e.message})` };
  }
}

function verdict(target, rows) {
  const mine = rows.filter((r) => r.target === target);
  const measured = mine.filter((r) => r.met !== undefined);
  if (measured.length === 0) return 'not measured';
  const detail = measured.map((r) => `${r.name.replace(/ \(.*\)$/, '')}: ratio ${r.ratio.toFixed(2)}`).join('; ');
  const partial = measured.length < mine.length ? `; ${mine.length - measured.length} row(s) not measured` : '';
  const all = !measured.every((r) => r.met) ? 'not met' : partial ? 'met where measured' : 'met';
  return `${all} (${detail}${partial})`;
}

const { rows, failures, error } = load(process.argv[2] ?? '');
const out = [];
if (error) out.push(`Benchmarks: ${error}.`);
else if (rows.length === 0) out.push('Benchmarks: the gpu section produced no rows.');
else {
  out.push('| figure | ours | reference (same run) | reference figure | ratio | target |');
  out.push('|---|---|---|---|---|---|');
  for (const r of rows) {
    const ref = r.reference ? [r.reference.label, `${num(r.reference.value)} ${r.unit}`] : ['not measured (see bench-gpu.log)', '-'];
    const target = r.target ? `${r.met === undefined ? 'not measured' : r.met ? 'met' : 'NOT met'}` : '';
    out.push(`| ${r.name} | ${num(r.value)} ${r.unit} | ${ref[0]} | ${ref[1]} | ${r.ratio === undefined ? '-' : r.ratio.toFixed(2)} | ${target} |`);
  }
}
for (const f of failures) out.push(`Section failed: ${String(f.error).split('\n')[0]}`);
out.push('');
out.push('Targets:');
for (const t of TARGETS) out.push(`- ${t}: ${verdict(t, rows)}`);
console.log(out.join('\n'));
