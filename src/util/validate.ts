// Turns zod validation failures into errors that name the field, what was expected and what was given.
import type { z } from 'zod';

import { ConfigError } from '../errors.js';

export { ConfigError };

function pathString(root: string, path: readonly PropertyKey[]): string {
  let s = root;
  for (const p of path) s += typeof p === 'number' ? `[${p}]` : `.${String(p)}`;
  return s;
}

function valueAt(input: unknown, path: readonly PropertyKey[]): unknown {
  let v: unknown = input;
  for (const p of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<PropertyKey, unknown>)[p];
  }
  return v;
}

function show(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (typeof v === 'string') return JSON.stringify(v);
  try {
    const s = JSON.stringify(v);
    return s.length > 80 ? s.slice(0, 77) + '...' : s;
  } catch {
    return String(v);
  }
}

/** Parses `input` with `schema`; on failure throws a ConfigError listing every problem (at most 5). */
export function validate<S extends z.ZodType>(schema: S, input: unknown, root: string, hint?: string): z.infer<S> {
  const r = schema.safeParse(input);
  if (r.success) return r.data as z.infer<S>;
  const issues = r.error.issues.slice(0, 5);
  const lines = issues.map((i) => `${pathString(root, i.path)}: ${i.message}; given ${show(valueAt(input, i.path))}`);
  const first = issues[0];
  throw new ConfigError(
    `invalid ${root}:\n  ${lines.join('\n  ')}${hint ? `\n${hint}` : ''}`,
    first ? pathString(root, first.path) : root,
  );
}
