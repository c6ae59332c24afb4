// Tests for the Chrome trace-event writer: valid JSON, thread-name metadata, complete (X) events, streaming.

import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TraceWriter } from '../src/io/trace.js';

interface TraceEvent {
  name: string;
  ph: string;
  pid: number;
  tid: number;
  ts?: number;
  dur?: number;
  args?: Record<string, unknown>;
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'trace-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

describe('TraceWriter', () => {
  test('writes valid JSON with thread names and X events in microseconds', () =>
    withDir(async (dir) => {
      const path = join(dir, 'trace.json');
      const t = new TraceWriter(path);
      t.track(1, 'tower 0');
      t.track(2, 'tower 1');
      t.span(1, 'forward', 10.5, 2.25, { batch: 64, device: 'cuda:0' });
      t.span(2, 'allreduce "ring"', 0.001, 0);
      assert.throws(() => t.span(1, 'bad', 0, -1), /duration/);
      assert.throws(() => t.span(-1, 'bad', 0, 1), /tid/);
      assert.throws(() => t.span(1, 'bad', NaN, 1), /start/);
      await t.close();
      await t.close();
      assert.throws(() => t.span(1, 'late', 0, 1), /closed/);

      const doc = JSON.parse(await readFile(path, 'utf8')) as { traceEvents: TraceEvent[]; displayTimeUnit: string };
      assert.equal(doc.displayTimeUnit, 'ms');
      const names = doc.traceEvents.filter((e) => e.ph === 'M' && e.name === 'thread_name');
      assert.deepEqual(
        names.map((e) => [e.pid, e.tid, e.args?.['name']]),
        [
          [1, 1, 'tower 0'],
          [1, 2, 'tower 1'],
        ],
      );
      const spans = doc.traceEvents.filter((e) => e.ph === 'X');
      assert.deepEqual(spans, [
        { name: 'forward', ph: 'X', pid: 1, tid: 1, ts: 10500, dur: 2250, args: { batch: 64, device: 'cuda:0' } },
        { name: 'allreduce "ring"', ph: 'X', pid: 1, tid: 2, ts: 1, dur: 0 },
      ]);
    }));

  test('an empty trace is still valid JSON', () =>
    withDir(async (dir) => {
      const path = join(dir, 'empty.json');
      await new TraceWriter(path).close();
      const doc = JSON.parse(await readFile(path, 'utf8')) as { traceEvents: TraceEvent[] };
      assert.ok(doc.traceEvents.every((e) => e.ph === 'M'));
    }));

  test('streams to disk before close, and unserialisable args do not corrupt the file', () =>
    withDir(async (dir) => {
      const path = join(dir, 'long.json');
      const t = new TraceWriter(path);
      t.track(0, 'main');
      const n = 20000;
      for (let i = 0; i < n; i++) t.span(0, `step ${i}`, i, 0.5, { i });
      await new Promise((r) => setTimeout(r, 50));
      assert.ok((await stat(path)).size > 500_000, 'events reach the file while the writer is open');
      const circular: Record<string, unknown> = {};
      circular['self'] = circular;
      assert.throws(() => t.span(0, 'bad', 0, 1, circular), TypeError);
      await t.close();
      const doc = JSON.parse(await readFile(path, 'utf8')) as { traceEvents: TraceEvent[] };
      const spans = doc.traceEvents.filter((e) => e.ph === 'X');
      assert.equal(spans.length, n);
      assert.equal(spans[n - 1]!.ts, (n - 1) * 1000);
    }));

  test('an unwritable path is reported by close(), not by crashing the process', async () => {
    const t = new TraceWriter(join(tmpdir(), 'no-such-dir-for-trace', 'x', 'trace.json'));
    t.span(0, 'a', 0, 1);
    await assert.rejects(t.close(), /writing .*trace\.json failed/);
  });
});
