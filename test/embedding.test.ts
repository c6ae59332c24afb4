// towerline embedded in an app, run as its own process: a training failure cannot crash an app that subscribed
// without error handlers (Note [Run streams]), and the runtime never keeps the process alive when it should not
// (Note [Process lifetime]).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { holding } from './support/holding.js';

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  out: string;
  err: string;
  /** Date.now() when each stdout line arrived, and when the process exited. */
  lines: Array<{ text: string; at: number }>;
  exitAt: number;
}

function app(name: string, mode: string, timeoutMs = 90_000): Promise<Exit> {
  const script = fileURLToPath(new URL(`./fixtures/apps/${name}.mts`, import.meta.url));
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', script, mode], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let partial = '';
    const lines: Exit['lines'] = [];
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${name} ${mode} did not exit within ${timeoutMs} ms; output so far:\n${out}\n${err}`));
    }, timeoutMs);
    child.stdout.on('data', (d: Buffer) => {
      out += d;
      partial += d;
      const parts = partial.split('\n');
      partial = parts.pop()!;
      for (const text of parts) lines.push({ text, at: Date.now() });
    });
    child.stderr.on('data', (d: Buffer) => (err += d));
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, out, err, lines, exitAt: Date.now() });
    });
  });
}

const at = (e: Exit, prefix: string): number => {
  const l = e.lines.find((x) => x.text.startsWith(prefix));
  assert.ok(l, `no line starting '${prefix}' in:\n${e.out}\n${e.err}`);
  return l.at;
};

describe('a failing run in an app that subscribed without error handlers', () => {
  for (const [mode, cause] of [['injected', /injected fault at point 0 on cpu:1/], ['kernel', /label at row=\d+ is \d+, outside \[0, C=5\)/]] as const)
    it(`${mode} fault: the app survives, sees the error once through done (TowerError, TL_TOWER) and a 'failed' event, and closes`, async () => {
      const e = await app('failing-app', mode);
      assert.equal(e.code, 0, `the app crashed:\n${e.out}\n${e.err}`);
      assert.doesNotMatch(e.err, /Uncaught|UnhandledPromiseRejection|ERR_UNHANDLED/);
      assert.match(e.out, /^caught TowerError TL_TOWER instanceof=true: tower on cpu:\d: step failed: /m);
      assert.match(e.out, cause);
      assert.match(e.out, /^failed event: TowerError$/m);
      assert.match(e.out, /^closed$/m);
      assert.match(e.out, /^rejections 1$/m);
      assert.doesNotMatch(e.out, /done without an error/);
    });
});

describe('process lifetime', () => {
  // Note [Exit checks without a stopwatch]: "exits at once" is checked by what holds the event loop after close():
  // nothing but the stdio pipes (process.getActiveResourcesInfo(): a ref'd timer, worker, port or socket left behind
  // is named there). The time to exit is only a backstop, 10 s: on a slow, loaded CI machine a healthy exit has taken
  // close to 1 s, and a leaked deadline timer or worker would still hold the process for far longer (or forever).
  it('after close() nothing holds the event loop and the process exits', async () => {
    const e = await app('lifetime-app', 'close');
    assert.equal(e.code, 0, e.err);
    assert.deepEqual(holding(e.out), [], 'resources left after close()');
    const dt = e.exitAt - at(e, 'closed');
    assert.ok(dt < 10_000, `exited ${dt} ms after close()`);
  });

  it('a script that forgets close() after its run finished still exits', async () => {
    const e = await app('lifetime-app', 'forget');
    assert.equal(e.code, 0, e.err);
    assert.deepEqual(holding(e.out), [], 'resources holding the event loop after the run finished');
    const dt = e.exitAt - at(e, 'done');
    assert.ok(dt < 10_000, `exited ${dt} ms after the run finished`);
  });

  it('an idle runtime does not keep the process alive', async () => {
    const e = await app('lifetime-app', 'idle');
    assert.equal(e.code, 0, e.err);
    const dt = e.exitAt - at(e, 'created');
    assert.ok(dt < 5000, `exited ${dt} ms after the script ended`);
  });

  it('a running train() keeps the process alive until the run ends', async () => {
    const e = await app('lifetime-app', 'running');
    assert.equal(e.code, 0, e.err);
    assert.ok(at(e, 'script body ended') <= at(e, 'complete after'));
    assert.match(e.out, /^complete after 20 steps/m);
  });
});
