// The rows of a docs table whose first column is a case id and whose last is the excerpt its output must contain:
// | `case-id` | ... | `excerpt` |
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
