// docs/design.md's Notes index stays true: every Note defined in the code ("Note [Name]:" opening a comment) is
// listed there once, with the file that defines it, and every listed Note is defined there exactly once.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

const root = join(import.meta.dirname, '..');
const SOURCE = /\.(ts|mts|cc|cu|cuh|h)$/;

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? files(p) : SOURCE.test(name) ? [p] : [];
  });
}

/** Note name -> files that define it (a definition opens a comment: `// Note [X]:`, ` * Note [X]:`, `# Note [X]:`). */
function definitions(): Map<string, string[]> {
  const defs = new Map<string, string[]>();
  for (const f of [...files(join(root, 'src')), ...files(join(root, 'cpp'))]) {
    for (const m of readFileSync(f, 'utf8').matchAll(/^\s*(?:\/\/|\/?\*|#)\s*Note \[([^\]]+)\]:/gm)) {
      const list = defs.get(m[1]!) ?? [];
      list.push(relative(root, f));
      defs.set(m[1]!, list);
    }
  }
  return defs;
}

function index(): Map<string, string> {
  const text = readFileSync(join(root, 'docs', 'design.md'), 'utf8');
  const start = text.indexOf('| Note | where |');
  const table = text.slice(start, text.indexOf('\n\n', start));
  const rows = new Map<string, string>();
  for (const m of table.matchAll(/^\| ([^|]+?) \| ([^|]+?) \| [^|]+ \|$/gm)) {
    if (m[1] === 'Note' || m[1]!.startsWith('---')) continue;
    assert.ok(!rows.has(m[1]!), `docs/design.md lists Note [${m[1]}] twice`);
    rows.set(m[1]!, m[2]!);
  }
  return rows;
}

describe('the Notes index (docs/design.md)', () => {
  it('lists every Note the code defines, each defined once, in the file the index names', () => {
    const defs = definitions();
    const rows = index();
    assert.ok(defs.size > 20, `found only ${defs.size} Notes: is the pattern still right?`);
    for (const [name, where] of defs) {
      assert.equal(where.length, 1, `Note [${name}] is defined in ${where.join(' and ')}; define it once and refer to it elsewhere`);
      assert.equal(rows.get(name), where[0], `Note [${name}] is defined in ${where[0]}; docs/design.md says ${rows.get(name) ?? 'nothing'}`);
    }
    for (const name of rows.keys()) assert.ok(defs.has(name), `docs/design.md lists Note [${name}], which no source file defines`);
  });
});
