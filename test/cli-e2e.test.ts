// The CLI as a user drives it: 3 CPU towers with checkpoints and logs, SIGKILL mid-run, resume: the final weights
// equal an uninterrupted run's bit for bit. Also Ctrl+C, the timeline, the TensorBoard file and a clear error.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadCheckpoint } from '../src/io/checkpoint.js';
import { towerline } from './support/cli.js';

const common = ['--devices', 'cpu*3', '--extra-towers', 'threads', '--batch-size', '96', '--steps', '90', '--seed', '7', '--lr', '0.05', '--ema', '0.99', '--checkpoint-every', '20', '--log-every', '10'];

describe('towerline CLI end to end', () => {
  it('SIGKILL mid-run, then --resume: final weights, optimizer state and EMA equal an uninterrupted run bit for bit', async () => {
    const base = await mkdtemp(join(tmpdir(), 'towerline-e2e-'));
    const full = await towerline(['train', ...common, '--checkpoint-dir', join(base, 'full')]);
    assert.equal(full.code, 0, full.err);
    assert.match(full.out, /^step 10, loss = \d+\.\d+ \(\d+\.\d examples\/sec; \d+\.\d{3} sec\/batch\)$/m);

    const dir = join(base, 'killed');
    const killed = await towerline(['train', ...common, '--checkpoint-dir', dir, '--log-dir', join(base, 'tb'), '--trace', join(base, 'trace.json')], (line, child) => {
      if (/^checkpoint at step 40:/.test(line)) child.kill('SIGKILL');
    });
    assert.equal(killed.signal, 'SIGKILL');
    const resumed = await towerline(['train', ...common, '--checkpoint-dir', dir, '--resume']);
    assert.equal(resumed.code, 0, resumed.err);
    assert.match(resumed.out, /resumed from .*ckpt-0000000(40|60)\.json at step (40|60)/);

    const a = await loadCheckpoint(join(base, 'full'));
    const b = await loadCheckpoint(dir);
    assert.equal(a.step, 90);
    assert.equal(b.step, 90);
    assert.deepEqual([...a.tensors.keys()].sort(), [...b.tensors.keys()].sort());
    assert.ok([...a.tensors.keys()].some((k) => k.startsWith('optimizer/')) && [...a.tensors.keys()].some((k) => k.startsWith('ema/')));
    for (const [name, t] of a.tensors) {
      const u = b.tensors.get(name)!;
      assert.equal(Buffer.compare(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength), Buffer.from(u.data.buffer, u.data.byteOffset, u.data.byteLength)), 0, `${name} differs after resume`);
    }

    // The killed run's timeline: valid JSON (closed or not, the tracks exist in the resumed run's own file below).
    const ck = await readdir(dir);
    assert.ok(ck.filter((f) => f.endsWith('.json')).length <= 3, 'keeps the last 3 checkpoints');
  });

  it('writes a timeline with one track per tower and the phases of each step in order, and TensorBoard scalars and histograms', async () => {
    const base = await mkdtemp(join(tmpdir(), 'towerline-trace-'));
    const r = await towerline(['train', '--devices', 'cpu*3', '--extra-towers', 'threads', '--steps', '6', '--trace', join(base, 't.json'), '--log-dir', join(base, 'tb'), '--histograms-every', '3']);
    assert.equal(r.code, 0, r.err);
    const trace = JSON.parse(await readFile(join(base, 't.json'), 'utf8')) as { traceEvents: Array<{ ph: string; name: string; tid: number; ts: number; dur?: number; args?: { name?: string; step?: number } }> };
    const names = trace.traceEvents.filter((e) => e.ph === 'M' && e.name === 'thread_name').map((e) => e.args?.name);
    assert.deepEqual(names.filter((n) => /^tower/.test(n ?? '')), ['tower 0 (cpu:0)', 'tower 1 (cpu:1)', 'tower 2 (cpu:2)']);
    for (let tid = 1; tid <= 3; tid++)
      for (let step = 1; step <= 6; step++) {
        const spans = trace.traceEvents.filter((e) => e.ph === 'X' && e.tid === tid && e.args?.step === step);
        const order = spans.map((e) => e.name).filter((n) => ['forward', 'backward', 'reduce', 'update'].includes(n));
        assert.deepEqual(order, ['forward', 'backward', 'reduce', 'update'], `tower ${tid - 1} step ${step}`);
        for (let i = 1; i < spans.length; i++) assert.ok(spans[i]!.ts >= spans[i - 1]!.ts, 'spans in time order');
      }
    const tb = await readdir(join(base, 'tb'));
    const events = tb.filter((f) => f.startsWith('events.out.tfevents.'));
    assert.equal(events.length, 1);
    const bytes = await readFile(join(base, 'tb', events[0]!));
    for (const tag of ['loss', 'learning_rate', 'examples_per_sec', 'gradient_norm', 'weights/dense_0/kernel']) assert.ok(bytes.includes(tag), `event file lacks tag ${tag}`);
  });

  it('Ctrl+C stops after the current step, writes a checkpoint and exits', async () => {
    const base = await mkdtemp(join(tmpdir(), 'towerline-int-'));
    const r = await towerline(['train', '--devices', 'cpu*2', '--steps', '100000', '--checkpoint-dir', base, '--log-every', '5'], (line, child) => {
      if (/^step 10,/.test(line)) child.kill('SIGINT');
    });
    assert.equal(r.code, 130, r.err);
    assert.match(r.err, /Ctrl\+C: stopping after the current step/);
    const ck = await loadCheckpoint(base);
    assert.ok(ck.step >= 10 && ck.step < 1000);
  });

  it('bad input gets a clear error and a non-zero exit', async () => {
    const r = await towerline(['train', '--devices', 'cpu*2', '--batch-size', '1', '--steps', '3']);
    assert.notEqual(r.code, 0);
    assert.match(r.err, /a batch of 1 cannot be split over 2 towers/);
    const r2 = await towerline(['train', '--devices', 'gpu:0', '--steps', '3']);
    assert.match(r2.err, /gpu/);
    const r4 = await towerline(['train', '--dataset', 'imagenet', '--steps', '2']);
    assert.notEqual(r4.code, 0);
    assert.match(r4.err, /unknown data set 'imagenet'; use mnist, cifar10 or blocks/);
    const empty = await mkdtemp(join(tmpdir(), 'towerline-empty-'));
    const r5 = await towerline(['train', '--data-dir', empty, '--steps', '2']);
    assert.notEqual(r5.code, 0);
    assert.match(r5.err, /--data-dir: '.*' lacks train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte \(plain or \.gz\)/);
    const r6 = await towerline(['train', '--bucket-mb', '4', '--steps', '2']);
    assert.notEqual(r6.code, 0);
    assert.match(r6.err, /--bucket-mb sets the bucket size of --overlap; add --overlap or drop --bucket-mb/);
    const r3 = await towerline(['eval', '--checkpoint', '/nonexistent/dir']);
    assert.notEqual(r3.code, 0);
    assert.match(r3.err, /nonexistent/);
  });

  it('--pin pins the tower\'s threads and says where they run', { skip: process.platform !== 'linux' ? 'thread affinity is Linux only' : false }, async () => {
    const r = await towerline(['train', '--devices', 'cpu:0', '--pin', '--steps', '3', '--log-every', '1']);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /threads pinned: cpu:0 on CPU \d+/);
    const plain = await towerline(['train', '--devices', 'cpu:0', '--steps', '2', '--log-every', '1']);
    assert.equal(plain.code, 0, plain.err);
    assert.doesNotMatch(plain.out, /threads pinned/, 'not pinned, and not said, without --pin');
  });
});
