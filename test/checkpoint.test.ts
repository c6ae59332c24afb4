// Tests for checkpoints: round trip, retention, atomicity debris, corruption detection and loader fuzzing.

import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { CheckpointError, latestCheckpoint, loadCheckpoint, saveCheckpoint, sidecarHash } from '../src/io/checkpoint.js';
import { Rng } from '../src/util/rng.js';

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'ckpt-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function tensors(seed: number) {
  const rng = new Rng(seed);
  const fill = (n: number) => Float32Array.from({ length: n }, () => rng.normal());
  return [
    { name: 'dense_0/kernel', shape: [4, 3], data: fill(12) },
    { name: 'dense_0/bias', shape: [3], data: fill(3) },
    { name: 'dense_1/kernel', shape: [3, 2], data: fill(6) },
  ];
}

function state(step: number) {
  const rng = new Rng(7);
  rng.normal();
  return { optimizer: { type: 'adam', lr: 1e-3, t: step }, rng: rng.getState(), data: { epoch: 2, batch: step % 17 }, spec: { name: 'mlp' } };
}

const sidecarOf = (dir: string, step: number) => join(dir, `ckpt-${String(step).padStart(9, '0')}.json`);
const weightsOf = (dir: string, step: number) => join(dir, `ckpt-${String(step).padStart(9, '0')}.safetensors`);

async function expectCkptError(p: Promise<unknown>, source: string, pattern: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof CheckpointError, `expected CheckpointError, got ${String(e)}`);
    assert.equal(e.source, source);
    assert.match(e.message, pattern);
    return true;
  });
}

describe('checkpoints', () => {
  test('save/load round trip by sidecar, weights file and directory', () =>
    withDir(async (dir) => {
      const ts = tensors(1);
      const path = await saveCheckpoint(dir, { step: 120, tensors: ts, state: state(120) }, { keep: 3 });
      assert.equal(path, sidecarOf(dir, 120));
      assert.deepEqual((await readdir(dir)).sort(), ['ckpt-000000120.json', 'ckpt-000000120.safetensors']);

      const sidecar = JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
      assert.equal(sidecar['format'], 'towerline-checkpoint');
      assert.equal(sidecar['version'], 2);
      assert.equal(sidecar['step'], 120);
      const w = sidecar['weights'] as { file: string; bytes: number; sha256: string };
      assert.equal(w.file, 'ckpt-000000120.safetensors');
      assert.equal(w.bytes, (await readFile(weightsOf(dir, 120))).length);
      assert.match(w.sha256, /^[0-9a-f]{64}$/);

      for (const from of [path, weightsOf(dir, 120), dir]) {
        const c = await loadCheckpoint(from);
        assert.equal(c.step, 120);
        assert.equal(c.path, path);
        assert.deepEqual(c.state, state(120));
        assert.deepEqual([...c.tensors.keys()], ts.map((t) => t.name));
        for (const t of ts) {
          assert.deepEqual(c.tensors.get(t.name)!.shape, t.shape);
          assert.deepEqual(c.tensors.get(t.name)!.data, t.data);
        }
        // The RNG resumes bit for bit from the saved state.
        const a = Rng.fromState(c.state['rng'] as string);
        const b = Rng.fromState(state(120).rng);
        assert.equal(a.normal(), b.normal());
      }
    }));

  test('keeps only the newest K by step; re-saving a step replaces it', () =>
    withDir(async (dir) => {
      for (const step of [10, 30, 20, 40, 50]) await saveCheckpoint(dir, { step, tensors: tensors(step), state: state(step) }, { keep: 2 });
      assert.deepEqual((await readdir(dir)).sort(), ['ckpt-000000040.json', 'ckpt-000000040.safetensors', 'ckpt-000000050.json', 'ckpt-000000050.safetensors']);
      assert.equal(await latestCheckpoint(dir), sidecarOf(dir, 50));

      await saveCheckpoint(dir, { step: 50, tensors: tensors(99), state: { again: true } }, { keep: 2 });
      const c = await loadCheckpoint(dir);
      assert.deepEqual(c.state, { again: true });
      assert.deepEqual(c.tensors.get('dense_0/bias')!.data, tensors(99)[1]!.data);
      assert.equal((await readdir(dir)).length, 4);
    }));

  test('step numbers beyond 9 digits still sort numerically', () =>
    withDir(async (dir) => {
      await saveCheckpoint(dir, { step: 999_999_999, tensors: [], state: {} }, { keep: 5 });
      await saveCheckpoint(dir, { step: 1_000_000_000, tensors: [], state: {} }, { keep: 5 });
      assert.equal(await latestCheckpoint(dir), join(dir, 'ckpt-1000000000.json'));
      assert.equal((await loadCheckpoint(dir)).step, 1_000_000_000);
    }));

  test('rejects bad arguments without writing anything', () =>
    withDir(async (dir) => {
      await assert.rejects(saveCheckpoint(dir, { step: -1, tensors: [], state: {} }, { keep: 1 }), /step/);
      await assert.rejects(saveCheckpoint(dir, { step: 1, tensors: [], state: {} }, { keep: 0 }), /keep/);
      await assert.rejects(saveCheckpoint(dir, { step: 1, tensors: [], state: { lr: NaN } }, { keep: 1 }), /'lr' is NaN/);
      await assert.rejects(saveCheckpoint(dir, { step: 1, tensors: [{ name: 'a', shape: [2], data: new Float32Array(1) }], state: {} }, { keep: 1 }), /shape/);
      assert.deepEqual(await readdir(dir), []);
    }));

  test('empty or missing directory', () =>
    withDir(async (dir) => {
      assert.equal(await latestCheckpoint(dir), undefined);
      assert.equal(await latestCheckpoint(join(dir, 'nope')), undefined);
      await expectCkptError(loadCheckpoint(dir), dir, /no complete checkpoint/);
      await expectCkptError(loadCheckpoint(join(dir, 'nope')), join(dir, 'nope'), /no such checkpoint/);
    }));

  test('truncated weights file', () =>
    withDir(async (dir) => {
      const path = await saveCheckpoint(dir, { step: 5, tensors: tensors(5), state: {} }, { keep: 1 });
      await truncate(weightsOf(dir, 5), 40);
      await expectCkptError(loadCheckpoint(path), weightsOf(dir, 5), /expected \d+ bytes \(per ckpt-000000005\.json\), found 40: truncated/);
      // latestCheckpoint will not offer it either.
      const skipped: string[] = [];
      assert.equal(await latestCheckpoint(dir, { onSkip: (p, why) => skipped.push(`${p} ${why}`) }), undefined);
      assert.match(skipped[0]!, /found 40: truncated/);
    }));

  test('a corrupted byte is caught by the hash', () =>
    withDir(async (dir) => {
      const path = await saveCheckpoint(dir, { step: 5, tensors: tensors(5), state: {} }, { keep: 1 });
      const bytes = await readFile(weightsOf(dir, 5));
      bytes[bytes.length - 3]! ^= 0x10;
      await writeFile(weightsOf(dir, 5), bytes);
      await expectCkptError(loadCheckpoint(path), weightsOf(dir, 5), /SHA-256 mismatch.*corrupted/);
    }));

  test('a missing sidecar means no checkpoint', () =>
    withDir(async (dir) => {
      await saveCheckpoint(dir, { step: 1, tensors: tensors(1), state: { s: 1 } }, { keep: 5 });
      await saveCheckpoint(dir, { step: 2, tensors: tensors(2), state: { s: 2 } }, { keep: 5 });
      await rm(sidecarOf(dir, 2));
      await expectCkptError(loadCheckpoint(weightsOf(dir, 2)), sidecarOf(dir, 2), /sidecar is missing/);
      assert.equal(await latestCheckpoint(dir), sidecarOf(dir, 1));
      assert.deepEqual((await loadCheckpoint(dir)).state, { s: 1 });
    }));

  /** A sidecar with its hash recomputed, so the checks after the hash see the edit. */
  const sealed = (sc: Record<string, unknown>) => {
    const { sha256: _old, ...rest } = sc;
    return { ...rest, sha256: sidecarHash(rest as Parameters<typeof sidecarHash>[0]) };
  };

  test('bad sidecars are named precisely', () =>
    withDir(async (dir) => {
      const path = await saveCheckpoint(dir, { step: 3, tensors: tensors(3), state: {} }, { keep: 1 });
      const good = JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown> & { weights: Record<string, unknown> };
      const cases: Array<[unknown, RegExp]> = [
        ['{"format": "towerline-checkpoint", ', /sidecar is not valid JSON/],
        [{ ...good, version: 1 }, /sidecar\.version/],
        [{ ...good, extra: 1 }, /extra/],
        [{ ...good, step: 4 }, /sidecar SHA-256 mismatch/], // an edit the hash catches
        [sealed({ ...good, step: 4 }), /step 4 but its file name says 3/], // a forged sidecar with a matching hash
        [{ ...good, weights: { ...good.weights, file: '../../etc/x.safetensors' } }, /sidecar\.weights\.file/],
        [{ ...good, weights: { ...good.weights, bytes: -1 } }, /sidecar\.weights\.bytes/],
        [{ ...good, weights: { ...good.weights, sha256: 'abc' } }, /sidecar\.weights\.sha256/],
        [{ ...good, state: [1, 2] }, /sidecar\.state/],
        [sealed({ ...good, weights: { ...good.weights, bytes: (good.weights['bytes'] as number) + 1 } }), /extra data|truncated/],
      ];
      for (const [content, pattern] of cases) {
        await writeFile(path, typeof content === 'string' ? content : JSON.stringify(content));
        await expectCkptError(loadCheckpoint(path), (pattern.source.includes('truncated') ? weightsOf(dir, 3) : path), pattern);
      }
    }));

  test('a crash mid-save leaves debris that latestCheckpoint ignores and the next save clears', () =>
    withDir(async (dir) => {
      await saveCheckpoint(dir, { step: 8, tensors: tensors(8), state: { s: 8 } }, { keep: 3 });
      // Simulate crashes: temp files at several stages and weights renamed without a sidecar.
      await writeFile(join(dir, '.ckpt-000000009.safetensors.tmp-abc123'), 'partial');
      await writeFile(join(dir, '.ckpt-000000009.json.tmp-def456'), '{"format":');
      await writeFile(weightsOf(dir, 9), (await readFile(weightsOf(dir, 8))).subarray(0, 10));
      assert.equal(await latestCheckpoint(dir), sidecarOf(dir, 8));
      assert.deepEqual((await loadCheckpoint(dir)).state, { s: 8 });

      await saveCheckpoint(dir, { step: 10, tensors: tensors(10), state: {} }, { keep: 3 });
      assert.deepEqual((await readdir(dir)).sort(), ['ckpt-000000008.json', 'ckpt-000000008.safetensors', 'ckpt-000000010.json', 'ckpt-000000010.safetensors']);
    }));

  test('fuzz: a damaged checkpoint loads intact or fails with CheckpointError', () =>
    withDir(async (dir) => {
      const ts = tensors(4);
      const path = await saveCheckpoint(dir, { step: 4, tensors: ts, state: state(4) }, { keep: 1 });
      const weights = await readFile(weightsOf(dir, 4));
      const sidecar = await readFile(path);
      const damage = fc.record({
        target: fc.constantFrom('weights' as const, 'sidecar' as const),
        kind: fc.constantFrom('truncate' as const, 'set' as const, 'append' as const),
        at: fc.nat(),
        byte: fc.integer({ min: 0, max: 255 }),
      });
      await fc.assert(
        fc.asyncProperty(damage, async (d) => {
          const original = d.target === 'weights' ? weights : sidecar;
          let bytes: Uint8Array = Uint8Array.from(original);
          if (d.kind === 'truncate') bytes = bytes.subarray(0, d.at % bytes.length);
          else if (d.kind === 'set') bytes[d.at % bytes.length] = d.byte;
          else bytes = Uint8Array.from([...bytes, d.byte]);
          await writeFile(d.target === 'weights' ? weightsOf(dir, 4) : path, bytes);
          try {
            const c = await loadCheckpoint(path);
            // Accepted only if the weights are bit-identical (the hash guards them) and the step is right.
            assert.equal(c.step, 4);
            for (const t of ts) assert.deepEqual(c.tensors.get(t.name)!.data, t.data);
            assert.equal(c.tensors.size, ts.length);
            if (d.target === 'weights') assert.deepEqual(bytes, weights);
          } catch (e) {
            assert.ok(e instanceof CheckpointError, `non-CheckpointError: ${String(e)}`);
          } finally {
            await writeFile(weightsOf(dir, 4), weights);
            await writeFile(path, sidecar);
          }
        }),
        { numRuns: 150, seed: 424242 },
      );
    }));
});
