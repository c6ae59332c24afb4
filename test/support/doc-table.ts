// The rows of a docs table whose first column is a case id and whose last is the excerpt its output must contain:
// | `case-id` | ... | `excerpt` |
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';

export async function docRows(doc: string): Promise<Map<string, string>> {
  const text = await readFile(new URL(`../../docs/${doc}`, import.meta.url), 'utf8');
  const rows = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^\| `([a-z0-9-]+)` \|.*\| `([^`]+)` \|$/.exec(line.trim());
    if (m) rows.set(m[1]!, m[2]!);
  }
  return rows;
}

/**
 * One test per case of a docs table: the table and `cases` list the same ids, and each case's text (its error,
 * warning or outcome) contains its row's excerpt.
 */
export function describeTable(title: string, doc: string, cases: Record<string, () => Promise<string>>): void {
  describe(title, async () => {
    const rows = await docRows(doc);
    it('the docs table and the test cases list the same cases', () => {
      assert.deepEqual([...rows.keys()].sort(), Object.keys(cases).sort());
    });
    for (const [id, f] of Object.entries(cases)) {
      it(`${id}: ${rows.get(id) ?? '(missing from the table)'}`, async () => {
        const text = await f();
        const excerpt = rows.get(id);
        assert.ok(excerpt, `${id} is not in docs/${doc}`);
        assert.ok(text.includes(excerpt), `${id}: the text does not contain the documented excerpt\n  excerpt: ${excerpt}\n  text: ${text}`);
      });
    }
  });
}
