// Test helpers for multi-process suites: spawn ranks (test/support/group-child.ts), wait for their events, run a
// real redis-server on loopback, temporary store directories.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ChildArgs } from './group-child.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface RankEvent {
  event: string;
  rank: number;
  ms: number;
  [k: string]: unknown;
}

export interface Rank {
  rank: number;
  proc: ChildProcess;
  events: RankEvent[];
  /** The first event of this kind (already seen or still to come); rejects when the process exits first or after `ms`. */
  next(event: string, ms: number): Promise<RankEvent>;
  exited: Promise<number | null>;
  stderr(): string;
}

export function spawnRank(args: ChildArgs): Rank {
  return spawnChild('group-child.ts', args.rank, args);
}

/**
 * Runs test/support/<script> with `args` as its JSON argument; `prefix` runs it under another command (e.g. `ip
 * netns exec ns`), `env` adds variables.
 */
export function spawnChild(script: string, rank: number, args: unknown, o: { prefix?: string[]; env?: Record<string, string> } = {}): Rank {
  const argv = [process.execPath, '--import', 'tsx', join('test', 'support', script), JSON.stringify(args)];
  const [cmd, ...rest] = [...(o.prefix ?? []), ...argv];
  const proc = spawn(cmd!, rest, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...o.env } });
  const events: RankEvent[] = [];
  const waiters: Array<() => void> = [];
  let err = '';
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
    for (let nl = out.indexOf('\n'); nl >= 0; nl = out.indexOf('\n')) {
      const line = out.slice(0, nl);
      out = out.slice(nl + 1);
      if (line.startsWith('{')) events.push(JSON.parse(line) as RankEvent);
      waiters.splice(0).forEach((w) => w());
    }
  });
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  let done = false;
  const exited = new Promise<number | null>((resolve) =>
    proc.on('exit', (code) => {
      done = true;
      waiters.splice(0).forEach((w) => w());
      resolve(code);
    }),
  );
  const next = (event: string, ms: number) =>
    new Promise<RankEvent>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`rank ${rank}: no '${event}' within ${ms} ms; events ${JSON.stringify(events)}; stderr ${err}`)), ms);
      const check = () => {
        const e = events.find((x) => x.event === event);
        if (e) {
          clearTimeout(timer);
          resolve(e);
        } else if (done) {
          clearTimeout(timer);
          reject(new Error(`rank ${rank} exited before '${event}'; events ${JSON.stringify(events)}; stderr ${err}`));
        } else {
          waiters.push(check);
        }
      };
      check();
    });
  return { rank, proc, events, next, exited, stderr: () => err };
}

/** Kills whatever is still running (by pid, each process this suite started). */
export function killAll(ranks: Rank[]): void {
  for (const r of ranks) if (r.proc.exitCode === null && r.proc.signalCode === null) r.proc.kill('SIGKILL');
}

export function tempStore(): { url: string; dir: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'towerline-rdzv-'));
  return { url: `file://${dir}`, dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = connect({ port, host: '127.0.0.1' }, () => {
      c.end();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
}

/** A real redis-server (Debian's redis-server package) on a free loopback port, persistence off. */
export async function startRedis(): Promise<{ url: string; stop(): Promise<void> }> {
  const port = await freePort();
  const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  const failed = new Promise<Error>((resolve) => proc.once('error', (e) => resolve(new Error(`cannot start redis-server (apt-get install redis-server): ${e.message}`))));
  const deadline = Date.now() + 10_000;
  for (;;) {
    const r = await Promise.race([canConnect(port), failed]);
    if (r instanceof Error) throw r;
    if (r) break;
    if (Date.now() > deadline) throw new Error(`redis-server did not listen on 127.0.0.1:${port} within 10 s`);
    await new Promise((res) => setTimeout(res, 50));
  }
  return {
    url: `redis://127.0.0.1:${port}`,
    stop: () =>
      new Promise<void>((resolve) => {
        if (proc.exitCode !== null) return resolve();
        proc.once('exit', () => resolve());
        proc.kill('SIGTERM');
      }),
  };
}
