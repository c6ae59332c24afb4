// Every CPU kernel path this machine has (Note [Kernel ISA]), forced by TOWERLINE_ISA in a child process: agrees with
// the float64 reference, keeps 2-tower replicas bit-identical, and gives the same bits as every other path.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { native } from '../src/native/addon.js';
import { addonInfo } from '../src/native/load.js';

const CHILD = fileURLToPath(new URL('./support/isa-child.ts', import.meta.url));

function runChild(isa: string): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', CHILD], {
    env: { ...process.env, TOWERLINE_ISA: isa },
    encoding: 'utf8',
    timeout: 240_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

interface ChildResult {
  isa: string;
  available: string[];
  worst: { err: number; what: string };
  kernelHash: string;
  replicas: boolean[];
  trainingHash: string;
}

describe('CPU kernel ISA paths', () => {
  const { isa, available } = native().kernelIsa();

  it('this process runs the widest path the CPU has, unless TOWERLINE_ISA picks one; addonInfo says which', () => {
    assert.ok(available.includes('scalar'), `available: ${available.join(', ')}`);
    assert.equal(isa, process.env.TOWERLINE_ISA || available.at(-1));
    assert.equal(addonInfo().kernels, isa);
  });

  const results = new Map<string, ChildResult>();
  for (const path of available) {
    it(`TOWERLINE_ISA=${path}: kernels within 1e-5 of the float64 reference at the tail sizes, replicas bit-identical`, () => {
      const r = runChild(path);
      assert.equal(r.status, 0, `child for ${path} failed: ${r.stderr.slice(-2000)}`);
      const res = JSON.parse(r.stdout.trim().split('\n').filter((l) => l.startsWith('{')).pop()!) as ChildResult;
      assert.equal(res.isa, path);
      assert.ok(res.worst.err < 1e-5, `${path}: rel err ${res.worst.err} in ${res.worst.what}`);
      assert.deepEqual(res.replicas, [true, true], `${path}: 2-tower replicas (momentum, Adam) must hash alike`);
      results.set(path, res);
    });
  }

  it(`every path gives the same bits (${available.join(', ')}): kernel outputs and trained weights`, (t) => {
    if (available.length < 2) return t.skip(`this CPU has only ${available.join(', ')}: nothing to compare`);
    const paths = [...results.keys()];
    assert.equal(paths.length, available.length, 'every path ran (see the tests above)');
    for (const p of paths.slice(1)) {
      assert.equal(results.get(p)!.kernelHash, results.get(paths[0]!)!.kernelHash, `kernel outputs of ${p} differ from ${paths[0]}`);
      assert.equal(results.get(p)!.trainingHash, results.get(paths[0]!)!.trainingHash, `trained weights of ${p} differ from ${paths[0]}`);
    }
  });

  it('a path that is unknown, or that this CPU lacks, is an error naming TOWERLINE_ISA and the paths it has', () => {
    const missing = ['avx2', 'avx512'].filter((p) => !available.includes(p));
    for (const bad of ['sse9', ...missing]) {
      const r = spawnSync(process.execPath, ['--import', 'tsx', '-e', "import('./src/native/addon.ts').then((m) => m.native().kernelIsa())"], {
        env: { ...process.env, TOWERLINE_ISA: bad },
        encoding: 'utf8',
        timeout: 60_000,
      });
      assert.notEqual(r.status, 0, `TOWERLINE_ISA=${bad} must fail`);
      assert.match(r.stderr, new RegExp(`TOWERLINE_ISA=${bad}`));
      assert.match(r.stderr, new RegExp(available.join(', ')));
    }
  });
});
