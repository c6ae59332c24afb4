// The Python interpreter the PyTorch references run under, and running one of them for its JSON line.
//
// TOWERLINE_PYTHON names it; else the first that exists of /opt/torch/.venv/bin/python3 (the GPU machine's venv,
// the only interpreter with torch there), /usr/bin/python3 (this project's CPU machines) and python3 on PATH. An
// interpreter without torch is fine: the reference scripts then print {"ok": false, "error": ...} and the bench
// row says why PyTorch's figure is missing.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { delimiter, join } from 'node:path';

const CANDIDATES = ['/opt/torch/.venv/bin/python3', '/usr/bin/python3'];

export function torchPython(): string {
  const given = process.env.TOWERLINE_PYTHON;
  if (given) return given;
  const onPath = (process.env.PATH ?? '').split(delimiter).filter(Boolean).map((d) => join(d, 'python3'));
  return [...CANDIDATES, ...onPath].find((p) => existsSync(p)) ?? 'python3';
}

/** Runs `python args...` and parses the last stdout line that starts with '{'; never rejects. */
export function runPythonJson<T extends { ok: boolean; error?: string }>(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<T | { ok: false; error: string }> {
  const python = torchPython();
  return new Promise((resolve) => {
    const child = spawn(python, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', (e) => resolve({ ok: false, error: `cannot run ${python} (set TOWERLINE_PYTHON to a python3 with torch): ${e.message}` }));
    child.on('close', (code) => {
      const line = out.trim().split('\n').filter((l) => l.startsWith('{')).pop();
      if (!line) return resolve({ ok: false, error: `${python} exited with ${code}: ${err.trim().split('\n').slice(-3).join(' | ')}` });
      try {
        resolve(JSON.parse(line) as T);
      } catch {
        resolve({ ok: false, error: `unparseable output of ${python}: ${line.slice(0, 200)}` });
      }
    });
  });
}
