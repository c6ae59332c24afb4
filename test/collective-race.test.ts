// Changing a communicator's schedule while towers run collectives back to back (Note [Schedule changes]): every
// collective uses one schedule on all ranks, so every result is one of the schedules' exact sums and the replicas
// are bit-identical, however the changes interleave with the phases.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { native } from '../src/native/addon.js';
import { ringSchedule } from '../src/scheduler/ring.js';
import { treeSchedule } from '../src/scheduler/tree.js';
import { naiveSchedule } from '../src/scheduler/naive.js';
import { testRandom } from '../src/reference/relerr.js';
import type { Schedule } from '../src/scheduler/schedule.js';

const nat = native();
const RANKS = 4;
const LENGTH = 100_003;
const COLLECTIVES = 300;

const devs = Array.from({ length: RANKS }, (_, r) => nat.openDevice('cpu', 40 + r).id);
after(() => devs.forEach((d) => nat.closeDevice(d)));

describe('schedule changes under running collectives', () => {
  it(`${COLLECTIVES} all-reduces on ${RANKS} towers while JS switches ring/tree/naive: exact sums, identical replicas`, async () => {
    const req = { ranks: RANKS, length: LENGTH };
    const schedules: Schedule[] = [ringSchedule(req), treeSchedule(req), naiveSchedule(req), ringSchedule(req, 1000)];
    const rand = testRandom(7);
    // Per rank: the input (kept), the arena the collective reduces in place, and its 64-bit hash as two i32 views.
    const towers = devs.map((d) => {
      const src = nat.alloc(d, LENGTH, 'f32');
      nat.write(src, Float32Array.from({ length: LENGTH }, () => rand() * 2 - 1));
      const arena = nat.alloc(d, LENGTH, 'f32');
      const h = nat.alloc(d, 2, 'i32');
      const hHigh = nat.allocView(h, 1, 1);
      return { d, src, arena, h, hHigh };
    });
    const comm = nat.createComm(towers.map((t) => t.arena), schedules[0]!, 30_000);
    const progs = towers.map((t, rank) =>
      nat.compile(t.d, [
        { kernel: 'copy', inputs: [t.src], outputs: [t.arena], attrs: { N: LENGTH } },
        { kernel: '@collective', inputs: [], outputs: [], attrs: { comm, rank } },
        { kernel: 'hash_bits', inputs: [t.arena], outputs: [t.h], attrs: { N: LENGTH } },
      ]),
    );
    const collective = async (): Promise<string[]> => {
      const rs = await Promise.all(towers.map((t, r) => nat.runWith(progs[r]!, [], [t.h, t.hHigh])));
      return rs.map((x) => `${(x.values[1]! >>> 0).toString(16)}:${(x.values[0]! >>> 0).toString(16)}`);
    };
    try {
      // The exact result of each schedule alone (float sums in another order differ in their last bits).
      const expected = new Set<string>();
      for (const s of schedules) {
        nat.setCommSchedule(comm, s);
        const hs = await collective();
        assert.equal(new Set(hs).size, 1, `${s.name} alone: replicas differ`);
        expected.add(hs[0]!);
      }
      // Now queue collectives back to back on the device threads and switch schedules while they run.
      const inFlight: Array<Promise<string[]>> = [];
      const results: string[][] = [];
      let switches = 0;
      for (let i = 0; i < COLLECTIVES; i++) {
        inFlight.push(collective());
        if (inFlight.length < 8) continue;
        for (let k = 0; k < 3; k++) {
          nat.setCommSchedule(comm, schedules[switches++ % schedules.length]!);
          await new Promise((r) => setImmediate(r));
        }
        results.push(await inFlight.shift()!);
      }
      results.push(...(await Promise.all(inFlight)));
      assert.equal(results.length, COLLECTIVES);
      results.forEach((hs, i) => {
        assert.equal(new Set(hs).size, 1, `collective ${i}: replicas differ (${hs.join(' ')})`);
        assert.ok(expected.has(hs[0]!), `collective ${i}: ${hs[0]} is none of the schedules' exact sums`);
      });
      assert.ok(switches >= COLLECTIVES, `only ${switches} schedule changes`);
    } finally {
      progs.forEach((p) => nat.releaseProgram(p));
      nat.releaseComm(comm);
      towers.forEach((t) => [t.hHigh, t.h, t.arena, t.src].forEach((b) => nat.free(b)));
    }
  });
});
