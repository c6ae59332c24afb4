// The small-collective path (Note [Collective executor], Note [Spinning barrier]): collectives run back to back in
// one program (what bench/allreduce.ts times) give the sums and bit-identical replicas, and the cheaper barrier
// still keeps its deadline (a tower whose peer never comes fails, naming the wait, and the communicator stays
// stopped for the peer that comes late).
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { native } from '../src/native/addon.js';
import { ringSchedule } from '../src/scheduler/ring.js';
import { treeSchedule } from '../src/scheduler/tree.js';
import { naiveSchedule } from '../src/scheduler/naive.js';
import type { Schedule, ScheduleRequest } from '../src/scheduler/schedule.js';

const nat = native();
const MAX_RANKS = 4;
const devs = Array.from({ length: MAX_RANKS }, (_, r) => nat.openDevice('cpu', 70 + r).id);
after(() => devs.forEach((d) => nat.closeDevice(d)));

const collective = (comm: number, rank: number) => ({ kernel: '@collective', inputs: [], outputs: [], attrs: { comm, rank } });

describe('collectives back to back on the device threads', () => {
  const plans: Array<[string, (req: ScheduleRequest) => Schedule]> = [['ring', ringSchedule], ['tree', treeSchedule], ['naive', naiveSchedule]];
  for (const [name, plan] of plans)
    it(`${name}, 2..4 towers, 1 KB: K all-reduces in one program each give n^(K-1) times the sum on every tower, bit-identical`, async () => {
      const K = 12;
      const length = 256;
      for (let n = 2; n <= MAX_RANKS; n++) {
        // Tower r holds (r + 1) / (n(n+1)/2) * v at element i: the first sum is exactly v, then every all-reduce
        // multiplies by n (7 * 3^11 and 7 * 4^11 are exact in float32).
        const bufs = devs.slice(0, n).map((d) => nat.alloc(d, length, 'f32'));
        const comm = nat.createComm(bufs, plan({ ranks: n, length }), 30_000);
        const progs = bufs.map((_, r) => nat.compile(devs[r]!, Array.from({ length: K }, () => collective(comm, r))));
        try {
          bufs.forEach((b, r) => nat.write(b, Float32Array.from({ length }, (_, i) => (r === 0 ? (i % 7) + 1 : 0))));
          await Promise.all(progs.map((p) => nat.run(p)));
          const out = bufs.map((b) => new Float32Array(nat.read(b) as ArrayLike<number>));
          for (let i = 0; i < length; i++) {
            const want = ((i % 7) + 1) * n ** (K - 1);
            assert.equal(out[0]![i], Math.fround(want), `${name} n=${n} element ${i}`);
            for (let r = 1; r < n; r++) assert.ok(Object.is(out[r]![i], out[0]![i]), `${name} n=${n}: tower ${r} differs from tower 0 at ${i}`);
          }
        } finally {
          progs.forEach((p) => nat.releaseProgram(p));
          nat.releaseComm(comm);
          bufs.forEach((b) => nat.free(b));
        }
      }
    });
});

describe('the barrier keeps its deadline', () => {
  it('a tower whose peer never comes times out naming the wait; the peer arriving later finds the collective stopped', async () => {
    const length = 256;
    const bufs = devs.slice(0, 2).map((d) => nat.alloc(d, length, 'f32'));
    const comm = nat.createComm(bufs, ringSchedule({ ranks: 2, length }), 300);
    const progs = bufs.map((_, r) => nat.compile(devs[r]!, [collective(comm, r)]));
    try {
      await assert.rejects(nat.run(progs[0]!), /rank 0\) timed out after 300 ms at the start of the collective waiting for the other towers/);
      await assert.rejects(nat.run(progs[1]!), /stopped: timed out after 300 ms at the start of the collective .*first noticed by/);
    } finally {
      progs.forEach((p) => nat.releaseProgram(p));
      nat.releaseComm(comm);
      bufs.forEach((b) => nat.free(b));
    }
  });
});
