// Hierarchical schedules (local ring reduce-scatter, one remote step per owned chunk, local ring all-gather) and what
// the native validator says about remote steps (Note [Remote steps]): every element must cross processes exactly
// once, from one reduction, and be copied verbatim to the other local towers.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { hierarchicalSchedule } from '../src/scheduler/hierarchical.js';
import { COPY, REDUCE, REMOTE, ScheduleError, validateSchedule, type CollStep, type Schedule } from '../src/scheduler/schedule.js';
import { native } from '../src/native/addon.js';

const sched = (phases: CollStep[][][], collective?: 'broadcast'): Schedule => ({ name: 'x', phases, collective });

describe('hierarchical schedules', () => {
  it('pass the native validator for 1 to 8 towers, many lengths, with and without segments', () => {
    for (let ranks = 1; ranks <= 8; ranks++)
      for (const length of [0, 1, 2, 3, 7, 100, 1001])
        for (const chunk of [undefined, 3]) {
          const s = hierarchicalSchedule({ ranks, length }, chunk);
          validateSchedule(s, { ranks, length });
          const remotes = s.phases.flat(2).filter((st) => st[0] === REMOTE);
          // Each element crosses processes once: the remote ranges tile [0, length).
          assert.equal(remotes.reduce((n, st) => n + st[3], 0), length, `${ranks} towers, ${length} elements`);
          assert.ok(remotes.every((st) => st[3] > 0));
        }
  });

  it('one remote phase per segment, between the 2(n-1) local phases; tower r sums the chunk it owns on slot r', () => {
    const s = hierarchicalSchedule({ ranks: 3, length: 9 });
    assert.equal(s.phases.length, 2 * 2 + 1);
    assert.deepEqual(s.phases[2], [[[REMOTE, 0, 3, 3]], [[REMOTE, 1, 6, 3]], [[REMOTE, 2, 0, 3]]]);
    assert.deepEqual(hierarchicalSchedule({ ranks: 1, length: 5 }).phases, [[[[REMOTE, 0, 0, 5]]]]);
  });

  it('remote steps are checked: slot, one per slot and phase, crossing once, races, broadcasts', () => {
    const reject = (s: Schedule, ranks: number, length: number, re: RegExp) =>
      assert.throws(() => native().validateSchedule(s, ranks, length), (e: Error) => re.test(e.message), `expected ${re}`);
    reject(sched([[[[REMOTE, 2, 0, 4]], []]]), 2, 4, /a remote step's slot must be in \[0, 2\), got 2/);
    reject(sched([[[[REMOTE, 0, 0, 2]], [[REMOTE, 0, 2, 2]]]]), 2, 4, /towers 0 and 1 both use slot 0 in phase 0/);
    reject(sched([[[[REMOTE, 0, 0, 4]]], [[[REMOTE, 0, 0, 4]]]]), 1, 4, /already crossed processes; each process's values must cross once/);
    reject(sched([[[[REMOTE, 0, 0, 2]]]]), 1, 4, /\[2, 4\) sums towers 0 only; every tower needs the sum of all 1 towers of every process/);
    reject(sched([[[[REMOTE, 0, 0, 4]], [[COPY, 0, 0, 4]]]]), 2, 4, /tower 0 writes \[0, 4\) while tower 1 reads/);
    reject(sched([[[[REMOTE, 0, 0, 4]], []]], 'broadcast'), 2, 4, /a broadcast schedule has no remote steps/);
    // Tower 1's values of the other processes never cross: tower 0 adds only this process's.
    reject(sched([[[[REMOTE, 0, 0, 4]], []], [[[REDUCE, 1, 0, 4]], []], [[], [[COPY, 0, 0, 4]]]]), 2, 4,
      /sums towers 1 of this process and 0 of every process only/);
    // Two towers crossing the same range separately hold separately computed sums.
    reject(sched([[[[REDUCE, 1, 0, 4]], []], [[[REMOTE, 0, 0, 4]], []], [[], [[REDUCE, 0, 0, 4]]]]), 2, 4, /already counts/);
    assert.throws(() => validateSchedule(sched([[[[REMOTE, 0, 0, 1]]]]), { ranks: 1, length: 2 }), ScheduleError);
  });

  it('partial sums may cross separately, then be added and copied verbatim', () => {
    const s = sched([[[[REMOTE, 0, 0, 4]], [[REMOTE, 1, 0, 4]]], [[[REDUCE, 1, 0, 4]], []], [[], [[COPY, 0, 0, 4]]]]);
    native().validateSchedule(s, 2, 4);
  });
});
