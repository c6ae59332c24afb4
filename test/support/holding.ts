// What held an app's event loop after close(): its 'active [...]' line (process.getActiveResourcesInfo(), printed
// on the turn after close() returned), the stdio pipes left out (Note [Exit checks without a stopwatch] in
// test/embedding.test.ts).
import assert from 'node:assert/strict';

export function holding(out: string, tag = 'active'): string[] {
  const m = new RegExp(`^${tag} (\\[.*\\])$`, 'm').exec(out);
  assert.ok(m, `no '${tag} [...]' line in:\n${out}`);
  return (JSON.parse(m[1]!) as string[]).filter((r) => r !== 'PipeWrap' && r !== 'TTYWrap');
}
