// Renders the README's figures from a real run: the loss curve and a per-tower timeline (SVG, no dependencies).
import { readFile, writeFile, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRuntime, mnist, mnistMlp, type StepEvent } from 'towerline';

const towers = Number(process.env.TOWERS ?? 3);
const dir = await mkdtemp(join(tmpdir(), 'towerline-fig-'));
const rt = await createRuntime({ devices: `cpu*${towers}`, reduction: { algorithm: 'ring' } });
const steps: StepEvent[] = [];
const run = rt.train({
  model: mnistMlp(),
  optimizer: { type: 'momentum', momentum: 0.9, lr: { type: 'exponential', lr: 0.1, decayRate: 0.95, decaySteps: 468, staircase: true } },
  data: mnist({ batchSize: 128 }),
  epochs: 2,
  seed: 1,
  traceFile: join(dir, 'trace.json'),
});
run.steps$.subscribe((e) => steps.push(e));
await run.done;
await rt.close();

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');

// Loss curve: the raw per-step loss and its 50-step moving average.
{
  const W = 640, H = 320, L = 56, R = 16, T = 28, B = 40;
  const xs = steps.map((e) => e.step), ys = steps.map((e) => e.loss);
  const smooth = ys.map((_, i) => { const a = ys.slice(Math.max(0, i - 49), i + 1); return a.reduce((p, q) => p + q, 0) / a.length; });
  const xmax = Math.max(...xs), ymax = Math.max(...ys.slice(0, 5), 2.5);
  const px = (x: number) => L + ((W - L - R) * (x - 1)) / (xmax - 1);
  const py = (y: number) => T + (H - T - B) * (1 - Math.min(y, ymax) / ymax);
  const path = (v: number[]) => v.map((y, i) => `${i ? 'L' : 'M'}${px(xs[i]!).toFixed(1)},${py(y).toFixed(1)}`).join('');
  let svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/>`;
  svg += `<text x="${L}" y="18" font-size="14">MNIST 784-500-10 on ${towers} CPU towers, global batch 128: training loss</text>`;
  for (let y = 0; y <= ymax; y += 0.5) svg += `<line x1="${L}" x2="${W - R}" y1="${py(y)}" y2="${py(y)}" stroke="#ddd"/><text x="${L - 8}" y="${py(y) + 4}" text-anchor="end">${y.toFixed(1)}</text>`;
  for (let x = 0; x <= xmax; x += 200) svg += `<text x="${px(Math.max(x, 1))}" y="${H - B + 16}" text-anchor="middle">${x}</text>`;
  svg += `<text x="${(W + L) / 2}" y="${H - 6}" text-anchor="middle">step</text>`;
  svg += `<path d="${path(ys)}" fill="none" stroke="#9ecae1" stroke-width="1"/><path d="${path(smooth)}" fill="none" stroke="#08519c" stroke-width="2"/></svg>\n`;
  await writeFile(new URL('../docs/loss-curve.svg', import.meta.url), svg);
}

// Timeline: 4 consecutive steps from the middle of the run, one lane per tower.
{
  const trace = JSON.parse(await readFile(join(dir, 'trace.json'), 'utf8')) as { traceEvents: Array<{ ph: string; name: string; tid: number; ts: number; dur: number; args?: { step?: number; name?: string } }> };
  const pick = new Set([300, 301, 302, 303]);
  const ev = trace.traceEvents.filter((e) => e.ph === 'X' && e.args?.step !== undefined && pick.has(e.args.step));
  const t0 = Math.min(...ev.map((e) => e.ts)), t1 = Math.max(...ev.map((e) => e.ts + e.dur));
  const names = new Map(trace.traceEvents.filter((e) => e.ph === 'M' && e.name === 'thread_name').map((e) => [e.tid, e.args?.name ?? String(e.tid)]));
  const colours: Record<string, string> = { input: '#bdbdbd', forward: '#3182bd', backward: '#e6550d', reduce: '#31a354', update: '#756bb1', idle: '#f0f0f0' };
  const W = 760, lane = 30, L = 130, top = 36;
  const tids = [...new Set(ev.map((e) => e.tid))].sort((a, b) => a - b);
  const H = top + lane * tids.length + 40;
  const px = (t: number) => L + ((W - L - 10) * (t - t0)) / (t1 - t0);
  let svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/>`;
  svg += `<text x="10" y="20" font-size="14">Per-tower timeline of 4 steps (${((t1 - t0) / 1000).toFixed(1)} ms): towers compute in parallel and meet in the all-reduce</text>`;
  tids.forEach((tid, i) => {
    const y = top + i * lane;
    svg += `<text x="10" y="${y + 19}">${esc(names.get(tid) ?? String(tid))}</text>`;
    for (const e of ev.filter((x) => x.tid === tid)) {
      const name = tid === 0 ? 'step' : e.name;
      const fill = tid === 0 ? '#fdd0a2' : (colours[name] ?? '#999');
      svg += `<rect x="${px(e.ts).toFixed(1)}" y="${y + 4}" width="${Math.max(0.5, px(e.ts + e.dur) - px(e.ts)).toFixed(1)}" height="${lane - 8}" fill="${fill}" stroke="white" stroke-width="0.5"><title>${esc(e.name)} ${(e.dur / 1000).toFixed(3)} ms</title></rect>`;
    }
  });
  let lx = L;
  for (const [k, c] of Object.entries(colours)) {
    svg += `<rect x="${lx}" y="${H - 24}" width="12" height="12" fill="${c}" stroke="#999"/><text x="${lx + 16}" y="${H - 14}">${k}</text>`;
    lx += 90;
  }
  svg += `</svg>\n`;
  await writeFile(new URL('../docs/timeline.svg', import.meta.url), svg);
}
console.log(`wrote docs/loss-curve.svg and docs/timeline.svg from ${steps.length} steps on ${towers} towers`);
