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
  if (typeof v === 'number' && !Number.isFinite(v)) return String(v); // JSON would print null
  if (typeof v === 'string') return JSON.stringify(v);
  try {
    const s = JSON.stringify(v);
    return s.length > 80 ? s.slice(0, 77) + '...' : s;
  } catch {
    return String(v);
  }
}

/** An issue's message, said plainly where zod's is vague: non-finite numbers, and unions (what each branch wanted). */
function explain(issue: z.core.$ZodIssue, given: unknown): string {
  if (typeof given === 'number' && !Number.isFinite(given)) return `expected a finite number (${given} is not one)`;
  // A union's own message (the schema's words) wins; zod's generic one is replaced by what each branch wanted.
  if (issue.code === 'invalid_union' && issue.message.startsWith('Invalid input') && Array.isArray(issue.errors) && issue.errors.length > 0) {
    const wants = [...new Set(issue.errors.map((branch) => branch[0]?.message?.replace(/^Invalid input: /, '')).filter((m): m is string => typeof m === 'string'))];
    if (wants.length > 0) return `no accepted form fits: ${wants.join('; or ')}`;
  }
  return issue.message;
}

/** Parses `input` with `schema`; on failure throws a ConfigError listing every problem (at most 5). */
export function validate<S extends z.ZodType>(schema: S, input: unknown, root: string, hint?: string): z.infer<S> {
  const r = schema.safeParse(input);
  if (r.success) return r.data as z.infer<S>;
  const issues = r.error.issues.slice(0, 5);
  const lines = issues.map((i) => `${pathString(root, i.path)}: ${explain(i, valueAt(input, i.path))}; given ${show(valueAt(input, i.path))}`);
  const first = issues[0];
  throw new ConfigError(
    `invalid ${root}:\n  ${lines.join('\n  ')}${hint ? `\n${hint}` : ''}`,
    first ? pathString(root, first.path) : root,
  );
}
