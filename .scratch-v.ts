import { native } from './src/native/addon.js';
import { shardBounds, reduceScatterSchedule, allGatherSchedule } from './src/scheduler/shards.js';
const v = (s: any, n: number, L: number) => native().validateSchedule(s, n, L);
for (let n = 1; n <= 6; n++) for (const L of [1, 5, 16, 17, 100, 1000]) {
  const sh = shardBounds(L, n);
  v(reduceScatterSchedule(sh), n, L); v(allGatherSchedule(sh), n, L);
}
const sh = shardBounds(100, 3);
console.log(sh);
const bad = (s: any, re: RegExp) => { try { v(s, 3, 100); console.log('NOT REJECTED', re); } catch (e) { console.log(re.test((e as Error).message) ? 'ok' : 'WRONG: ' + (e as Error).message); } };
const rs = reduceScatterSchedule(sh);
bad({ ...rs, phases: [rs.phases[0]!.map((x, r) => r === 1 ? [] : x)] }, /sums towers 1 only/);
bad({ ...rs, shards: [[0, 10], [20, 80], [100, 0]] }, /must start at 10/);
bad({ ...rs, collective: 'all-gather' }, /not tower 0's values copied verbatim|copied verbatim/);
const ag = allGatherSchedule(sh);
bad({ ...ag, phases: [ag.phases[0]!.map((x, r) => r === 2 ? x.slice(1) : x)] }, /is not tower 0's values/);
bad({ ...ag, shards: undefined }, /expected one shard per tower/);
bad({ ...ringLike() }, /only a reduce-scatter or an all-gather has shards/);
function ringLike() { return { name: 'x', phases: [], shards: sh }; }
