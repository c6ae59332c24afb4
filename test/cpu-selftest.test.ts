// The CPU kernels' native self-test (cpp/cpu/selftest.sh: sgemm, sgemmMany and the built-in GEMM against float64, the
// same bits at every thread count, the kernels as a compiled program calls them), built from the sources with the
// addon's flags and run with the built-in GEMM and, where it loads, OpenBLAS. In CI so the self-test keeps building:
// it had stopped linking (affinity.cc missing from its sources) without anything noticing.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

describe('the CPU kernels self-test (cpp/cpu/selftest.sh)', () => {
  it('builds and passes with the built-in GEMM and with OpenBLAS where it loads', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tl-selftest-'));
    try {
      const r = spawnSync('sh', [join(import.meta.dirname, '..', 'cpp', 'cpu', 'selftest.sh'), '--no-bench'], {
        encoding: 'utf8',
        env: { ...process.env, TMPDIR: dir },
        timeout: 600_000,
      });
      const out = `${r.stdout}\n${r.stderr}`;
      assert.equal(r.status, 0, `selftest.sh exited with ${r.status} (${r.signal ?? 'no signal'}):\n${out.slice(-4000)}`);
      const runs = [...out.matchAll(/^(\d+) passed, (\d+) failed$/gm)];
      assert.ok(runs.length >= 1, `no "N passed, M failed" line:\n${out.slice(-4000)}`);
      for (const m of runs) {
        assert.equal(m[2], '0', `a run failed:\n${out.slice(-4000)}`);
        assert.ok(Number(m[1]) > 50, `only ${m[1]} checks ran`);
      }
      assert.match(out, /PASS sgemmMany: /);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
