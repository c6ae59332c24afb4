// The shape the design promises (docs/design.md): no import cycles (type-only imports count), no source file in
// src/ over ~500 lines, and src/runtime.ts a facade of at most ~250 lines.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const DPDM = join(root, 'node_modules', 'dpdm', 'lib', 'bin', 'dpdm.js');
/** Every module an app, the CLI, a worker or a test can start from. */
const ENTRIES = ['src/index.ts', 'src/advanced.ts', 'src/cli.ts', 'src/actors/tower-actor.ts', 'src/testing/faults.ts'];

function cycles(entries: string[], cwd: string): { status: number | null; out: string } {
  const r = spawnSync(process.execPath, [DPDM, '--no-tree', '--no-warning', '--exit-code', 'circular:1', ...entries], { cwd, encoding: 'utf8' });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

it('the cycle check finds a cycle when there is one (type-only imports included)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tl-cycle-'));
  writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext' } }));
  writeFileSync(join(dir, 'a.ts'), "import type { B } from './b.js';\nexport interface A { b?: B }\n");
  writeFileSync(join(dir, 'b.ts'), "import type { A } from './a.js';\nexport interface B { a?: A }\n");
  assert.equal(cycles(['a.ts'], dir).status, 1);
});

it('src/ has no import cycles', () => {
  const r = cycles(ENTRIES, root);
  assert.equal(r.status, 0, r.out);
});

it('no file in src/ is over 500 lines, and src/runtime.ts is at most 250', () => {
  const files = (readdirSync(join(root, 'src'), { recursive: true }) as string[]).filter((f) => /\.(ts|mts|mjs)$/.test(f));
  const lines = (f: string) => readFileSync(join(root, 'src', f), 'utf8').split('\n').length;
  const big = files.filter((f) => lines(f) > 500).map((f) => `${f} (${lines(f)} lines)`);
  assert.deepEqual(big, [], `split these by concern: ${big.join(', ')}`);
  assert.ok(lines('runtime.ts') <= 250, `src/runtime.ts has ${lines('runtime.ts')} lines`);
});
