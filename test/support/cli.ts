// The real `towerline` command as a child process, its output line by line (a test can act on a line: kill it,
// close its stdout), and how it ended.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const BIN = fileURLToPath(new URL('../../bin/towerline.mjs', import.meta.url));

export interface Proc {
  out: string;
  err: string;
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface Child {
  kill(s: NodeJS.Signals): void;
  /** Closes the read end of the child's stdout, as `| head -1` does once it has its line. */
  closeStdout(): void;
}

export function towerline(args: string[], onLine?: (line: string, child: Child) => void, onStart?: (child: Child) => void): Promise<Proc> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    const handle: Child = { kill: (s) => child.kill(s), closeStdout: () => child.stdout.destroy() };
    onStart?.(handle);
    let out = '';
    let err = '';
    let partial = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d;
      partial += d;
      const lines = partial.split('\n');
      partial = lines.pop()!;
      for (const l of lines) onLine?.(l, handle);
    });
    child.stderr.on('data', (d: Buffer) => (err += d));
    child.on('exit', (code, signal) => resolve({ out, err, code, signal }));
  });
}
