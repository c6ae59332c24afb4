// The CPU layout (Note [CPU layout]): GEMM threads per tower from the cores and the towers of this machine.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { cpuLayout, describeLayout } from '../src/tower-port/layout.js';

describe('CPU layout', () => {
  it('gives each tower floor(cores / towers) GEMM threads, at least 1', () => {
    const cases: Array<[cores: number, towers: number, gemm: number, oversubscribed: boolean]> = [
      [2, 1, 2, false],
      [2, 2, 1, false],
      [2, 4, 1, true],
      [16, 3, 5, false],
      [16, 16, 1, false],
      [1, 0, 1, false],
    ];
    for (const [cores, towers, gemm, over] of cases) {
      const l = cpuLayout(cores, towers);
      assert.equal(l.gemmThreads, gemm, `${towers} towers on ${cores} cores`);
      assert.equal(l.oversubscribed, over, `${towers} towers on ${cores} cores`);
    }
  });

  it('never keeps more threads busy than there are cores', () => {
    for (let cores = 1; cores <= 64; cores++)
      for (let towers = 0; towers <= 70; towers++) {
        const l = cpuLayout(cores, towers);
        assert.ok(l.busyThreads <= cores, `${towers} towers on ${cores} cores: ${l.busyThreads} busy`);
        if (towers <= cores) assert.ok(towers * l.gemmThreads <= cores, `${towers} x ${l.gemmThreads} GEMM threads on ${cores} cores`);
      }
  });

  it('says when the towers outnumber the cores, and refuses nonsense', () => {
    assert.equal(describeLayout(cpuLayout(2, 1)), '1 CPU tower on 2 cores: 2 GEMM threads');
    assert.equal(describeLayout(cpuLayout(2, 2)), '2 CPU towers on 2 cores: 1 GEMM thread each');
    assert.match(describeLayout(cpuLayout(2, 4)), /^4 CPU towers on 2 cores: 1 GEMM thread each; more towers than cores/);
    assert.throws(() => cpuLayout(0, 1), /cores must be an integer >= 1, got 0/);
    assert.throws(() => cpuLayout(2, 1.5), /towers must be an integer >= 0, got 1.5/);
  });
});
