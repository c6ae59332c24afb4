// Checkpoints across processes (Note [Process dimension] in src/group/world.ts): rank 0 finds and reads the
// checkpoint, every rank gets its bytes over the group, so every rank resumes from the very same state whether or
// not it can see rank 0's disk. A resume on another world is allowed and says whether it stays bit-identical.
import { latestCheckpoint, loadCheckpoint, type LoadedCheckpoint } from '../io/checkpoint.js';
import { readSafetensors, writeSafetensors } from '../io/safetensors.js';
import type { World, WorldShape } from './world.js';

const text = new TextEncoder();

/** The newest complete checkpoint in `dir` as rank 0 sees it, on every rank. */
export async function sharedLatest(world: World, dir: string): Promise<string | undefined> {
  const got = await world.fromRoot('find the latest checkpoint', async () => {
    const path = await latestCheckpoint(dir);
    return path === undefined ? undefined : text.encode(path);
  });
  return got === undefined ? undefined : new TextDecoder().decode(got);
}

/** The checkpoint at `path` as rank 0 reads it, on every rank (a JSON header, then the tensors as safetensors). */
export async function sharedLoad(world: World, path: string): Promise<LoadedCheckpoint> {
  const got = await world.fromRoot('read the checkpoint to resume from', async () => {
    const ck = await loadCheckpoint(path);
    const head = text.encode(JSON.stringify({ step: ck.step, state: ck.state, path: ck.path }));
    const tensors = writeSafetensors([...ck.tensors].map(([name, t]) => ({ name, shape: t.shape, data: t.data })));
    const out = new Uint8Array(4 + head.length + tensors.length);
    new DataView(out.buffer).setUint32(0, head.length, true);
    out.set(head, 4);
    out.set(tensors, 4 + head.length);
    return out;
  });
  if (!got) throw new Error(`rank 0 sent no checkpoint for ${path}`);
  const headLength = new DataView(got.buffer, got.byteOffset).getUint32(0, true);
  const head = JSON.parse(new TextDecoder().decode(got.subarray(4, 4 + headLength))) as Omit<LoadedCheckpoint, 'tensors'>;
  return { ...head, tensors: readSafetensors(got.subarray(4 + headLength), `${path} (from rank 0)`).tensors };
}

/** A tower's state as rank 0's `read` gives it, on every rank (the replica policy's 'rebroadcast'). */
export async function rootState(world: World, read: () => Promise<Array<{ name: string; shape: number[]; data: Float32Array }>>): Promise<Array<[string, Float32Array]>> {
  const got = await world.fromRoot("read tower 0's state", async () => writeSafetensors(await read()));
  if (!got) throw new Error("rank 0 sent no state for the replica policy's rebroadcast");
  return [...readSafetensors(got, 'the state from rank 0').tensors].map(([name, t]) => [name, t.data]);
}

// Note [Resume on another world]: a checkpoint records the world it was written on (processes, towers in each).
// The gradient is exact on any world (Note [Shard weighting]), so a resume on another one is allowed; but the
// shards and the order of the sums (the local ring over T towers, Gloo's ring over P processes) depend on P and T,
// so only a resume on the same world continues the trajectory bit for bit. The 'resumed' event says which.

/** Splits the world out of saved and given run settings (it is reported, not compared) and says what the resume keeps. */
export function resumeWorld<T extends { world?: WorldShape }>(saved: T, given: T): { saved: Omit<T, 'world'>; given: Omit<T, 'world'>; bitIdentical: boolean; note: string } {
  const { world: was, ...savedRest } = saved;
  const { world: now, ...givenRest } = given;
  const show = (w: WorldShape | undefined) => (w ? `${w.processes} process${w.processes === 1 ? '' : 'es'} × ${w.towersPerProcess} tower${w.towersPerProcess === 1 ? '' : 's'}` : 'an unrecorded world');
  const same = was !== undefined && now !== undefined && was.processes === now.processes && was.towersPerProcess === now.towersPerProcess;
  const note = same
    ? `on the world it was written on (${show(now)}): the trajectory continues bit for bit`
    : `on ${show(now)}, written on ${show(was)}: the gradient is exact but its shards and summation order differ, so the trajectory is not bit-identical with an uninterrupted run`;
  return { saved: savedRest, given: givenRest, bitIdentical: same, note };
}
