import { native } from './src/native/addon.js';
import { ringSchedule } from './src/scheduler/ring.js';
const nat = native();
const n = 2;
const devs = Array.from({ length: n }, (_, r) => nat.openDevice('cpu', 60 + r).id);
async function lat(bytes: number, K: number) {
  const len = bytes / 4;
  const bufs = devs.map((d) => nat.alloc(d, len, 'f32'));
  const comm = nat.createComm(bufs, ringSchedule({ ranks: n, length: len }), 30000);
  const ops = Array.from({ length: K }, () => ({ kernel: '@collective', inputs: [], outputs: [], attrs: { comm, rank: 0 } }));
  const progs = devs.map((d, r) => nat.compile(d, ops.map((o) => ({ ...o, attrs: { comm, rank: r } }))));
  const best: number[] = [];
  for (let rep = 0; rep < 15; rep++) {
    const t0 = performance.now();
    await Promise.all(progs.map((p) => nat.run(p)));
    best.push((performance.now() - t0) / K);
  }
  best.sort((a, b) => a - b);
  console.log(`${bytes} B: in-program ${(best[0]! * 1000).toFixed(2)} us best, ${(best[7]! * 1000).toFixed(2)} us median; stats`, nat.commStats(comm, 0));
  progs.forEach((p) => nat.releaseProgram(p)); nat.releaseComm(comm); bufs.forEach((b) => nat.free(b));
}
await lat(1024, 2000);
await lat(64 << 20, 3);
devs.forEach((d) => nat.closeDevice(d));
