// Atomic, verified training checkpoints: a safetensors weights file plus a JSON sidecar written last.
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { z } from 'zod';
import { CheckpointError, readSafetensors, writeSafetensors, type TensorIn, type TensorOut } from './safetensors.js';
import { ConfigError, validate } from '../util/validate.js';

export { CheckpointError } from './safetensors.js';

export const CHECKPOINT_FORMAT = 'towerline-checkpoint';
/** 2: the sidecar carries its run id and a SHA-256 over all of its own fields (the run state included). */
export const CHECKPOINT_VERSION = 2;

export interface CheckpointToSave {
  step: number;
  tensors: readonly TensorIn[];
  /** Any JSON: optimizer hyper-state, RNG state, data position, model spec. */
  state: Record<string, unknown>;
  /** The run that writes it: pruning touches only this run's checkpoints (default '': one anonymous run). */
  run?: string;
}

export interface LoadedCheckpoint {
  step: number;
  tensors: Map<string, TensorOut>;
  state: Record<string, unknown>;
  /** The run that wrote it. */
  run: string;
  /** The sidecar that was loaded. */
  path: string;
}

const STEP_DIGITS = 9;
const SIDECAR_RE = /^ckpt-(\d{9,})\.json$/;
const WEIGHTS_RE = /^ckpt-(\d{9,})\.safetensors$/;
const TEMP_RE = /^\.ckpt-(\d{9,})\.(?:json|safetensors)\.tmp-[0-9a-f]+$/;

const sidecarSchema = z
  .object({
    format: z.literal(CHECKPOINT_FORMAT),
    version: z.literal(CHECKPOINT_VERSION, { message: `expected format version ${CHECKPOINT_VERSION} (this towerline reads only checkpoints that hash their whole sidecar)` }),
    step: z.number().int().nonnegative(),
    run: z.string(),
    weights: z
      .object({
        // A bare file name: the weights always sit next to the sidecar, never elsewhere on disk.
        file: z.string().regex(WEIGHTS_RE, 'expected a file name like ckpt-000000001.safetensors'),
        bytes: z.number().int().nonnegative(),
        sha256: z.string().regex(/^[0-9a-f]{64}$/, 'expected 64 lowercase hex digits'),
      })
      .strict(),
    savedAt: z.string(),
    state: z.record(z.string(), z.unknown()),
    // SHA-256 of the canonical JSON of every other field: the run state (data position, learning-rate scale,
    // settings) changes the trajectory as much as the weights do, so no byte of it goes unchecked.
    sha256: z.string().regex(/^[0-9a-f]{64}$/, 'expected 64 lowercase hex digits'),
  })
  .strict();
type Sidecar = z.infer<typeof sidecarSchema>;

/** JSON with object keys sorted at every level: the same text for the same value, however it was parsed. */
function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o)
      .filter((k) => o[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v);
}

/** The SHA-256 a sidecar records over its other fields (exported for tests that forge a consistent sidecar). */
export function sidecarHash(sc: Omit<Sidecar, 'sha256'>): string {
  return sha256(new TextEncoder().encode(canonicalJson(sc)));
}

function stem(step: number): string {
  return `ckpt-${String(step).padStart(STEP_DIGITS, '0')}`;
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function errno(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException | undefined)?.code;
}

/** Makes a rename durable; some platforms/filesystems cannot fsync a directory, which we tolerate. */
async function syncDir(dir: string): Promise<void> {
  let fh;
  try {
    fh = await open(dir, 'r');
    await fh.sync();
  } catch (e) {
    if (!['EISDIR', 'EINVAL', 'EPERM', 'EBADF', 'ENOTSUP'].includes(errno(e) ?? '')) throw e;
  } finally {
    await fh?.close();
  }
}

/** Writes `data` to `dir/name` via a synced temp file and a rename, so readers see all of it or none. */
async function writeAtomic(dir: string, name: string, data: Uint8Array): Promise<void> {
  const tmp = join(dir, `.${name}.tmp-${randomBytes(6).toString('hex')}`);
  try {
    const fh = await open(tmp, 'wx');
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, join(dir, name));
  } catch (e) {
    await rm(tmp, { force: true }).catch(() => undefined);
    throw e;
  }
  await syncDir(dir);
}

/** JSON.stringify that refuses values JSON would silently turn into null (NaN, Infinity). */
function stateJson(sidecar: Omit<Sidecar, 'sha256'>): string {
  return JSON.stringify(
    sidecar,
    (key, v: unknown) => {
      if (typeof v === 'number' && !Number.isFinite(v)) {
        throw new RangeError(`saveCheckpoint: state value '${key}' is ${v}, which JSON cannot represent`);
      }
      return v;
    },
    2,
  );
}

/**
 * Saves step `ckpt.step` into `dir` and prunes this run's checkpoints to the newest `opts.keep` (by step; the one
 * just written always stays; other runs' checkpoints are never touched). Weights go first, the sidecar last: a
 * checkpoint exists only once its sidecar does. Returns the sidecar path.
 */
export async function saveCheckpoint(dir: string, ckpt: CheckpointToSave, opts: { keep: number }): Promise<string> {
  if (!Number.isSafeInteger(ckpt.step) || ckpt.step < 0) throw new RangeError(`saveCheckpoint: step must be a non-negative integer, given ${ckpt.step}`);
  if (!Number.isSafeInteger(opts.keep) || opts.keep < 1) throw new RangeError(`saveCheckpoint: keep must be a positive integer, given ${opts.keep}`);
  if (typeof ckpt.state !== 'object' || ckpt.state === null || Array.isArray(ckpt.state)) {
    throw new TypeError('saveCheckpoint: state must be a JSON object');
  }
  const name = stem(ckpt.step);
  const weightsName = `${name}.safetensors`;
  const sidecarName = `${name}.json`;
  const weights = writeSafetensors(ckpt.tensors, { format: CHECKPOINT_FORMAT, step: String(ckpt.step) });
  const run = ckpt.run ?? '';
  const body: Omit<Sidecar, 'sha256'> = {
    format: CHECKPOINT_FORMAT,
    version: CHECKPOINT_VERSION,
    step: ckpt.step,
    run,
    weights: { file: weightsName, bytes: weights.length, sha256: sha256(weights) },
    savedAt: new Date().toISOString(),
    state: ckpt.state,
  };
  // Serialise before touching the disk so bad state cannot leave a half-written checkpoint behind; the hash is of
  // what JSON keeps (a round trip), so the loader recomputes the very same value.
  const kept = JSON.parse(stateJson(body)) as Omit<Sidecar, 'sha256'>;
  const sidecarBytes = new TextEncoder().encode(JSON.stringify({ ...kept, sha256: sidecarHash(kept) }, null, 2) + '\n');

  await mkdir(dir, { recursive: true });
  // Re-saving a step: retire the old sidecar first, or a crash between the two renames would pair it with new weights.
  const sidecarPath = join(dir, sidecarName);
  try {
    await rm(sidecarPath);
    await syncDir(dir);
  } catch (e) {
    if (errno(e) !== 'ENOENT') throw e;
  }
  await writeAtomic(dir, weightsName, weights);
  await writeAtomic(dir, sidecarName, sidecarBytes);
  await prune(dir, opts.keep, run, ckpt.step);
  return sidecarPath;
}

/** The run a sidecar belongs to, when it reads and verifies; undefined for a damaged one (whose owner is unknown). */
async function ownerOf(path: string): Promise<string | undefined> {
  try {
    return (await readSidecar(path)).run;
  } catch (e) {
    if (e instanceof CheckpointError) return undefined;
    throw e;
  }
}

async function removeCheckpoint(dir: string, step: number): Promise<void> {
  // Sidecar first: once it is gone the checkpoint no longer counts, whatever happens to the weights.
  await rm(join(dir, `${stem(step)}.json`), { force: true });
  await rm(join(dir, `${stem(step)}.safetensors`), { force: true });
}

/**
 * Deletes `run`'s checkpoints beyond its newest `keep` (the one at `written` always stays), plus crash debris (temp
 * files, weights without a sidecar) at or below `written`. Other runs' checkpoints, and damaged ones, stay.
 */
async function prune(dir: string, keep: number, run: string, written: number): Promise<void> {
  const names = await readdir(dir);
  const sidecars = new Set<number>();
  const mine: number[] = [];
  for (const n of names) {
    const m = SIDECAR_RE.exec(n);
    if (!m) continue;
    const step = Number(m[1]);
    sidecars.add(step);
    if (step !== written && (await ownerOf(join(dir, n))) === run) mine.push(step);
  }
  mine.sort((a, b) => b - a);
  for (const step of mine.slice(keep - 1)) await removeCheckpoint(dir, step);
  for (const n of names) {
    const weights = WEIGHTS_RE.exec(n);
    const temp = TEMP_RE.exec(n);
    const m = weights ?? temp;
    if (!m) continue;
    const step = Number(m[1]);
    if (step <= written && (temp !== null || !sidecars.has(step))) await rm(join(dir, n), { force: true });
  }
}

/** The checkpoint files in `dir` (sidecars and weights, any run, damaged ones too), by step; [] for a missing dir. */
export async function checkpointFiles(dir: string): Promise<Array<{ step: number; name: string }>> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (e) {
    if (errno(e) === 'ENOENT') return [];
    throw e;
  }
  return names
    .map((name) => ({ name, m: SIDECAR_RE.exec(name) ?? WEIGHTS_RE.exec(name) }))
    .filter((f) => f.m !== null)
    .map((f) => ({ step: Number(f.m![1]), name: f.name }))
    .sort((a, b) => a.step - b.step || a.name.localeCompare(b.name));
}

/** Removes every checkpoint in `dir` not written by `run` (an explicit overwrite), damaged ones included. */
export async function removeOtherRuns(dir: string, run: string): Promise<number> {
  let removed = 0;
  const steps = new Set((await checkpointFiles(dir)).map((f) => f.step));
  for (const step of steps) {
    const sidecar = join(dir, `${stem(step)}.json`);
    const owner = await stat(sidecar).then(() => ownerOf(sidecar), () => undefined);
    if (owner === run) continue;
    await removeCheckpoint(dir, step);
    removed++;
  }
  return removed;
}

async function readSidecar(path: string): Promise<Sidecar> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if (errno(e) === 'ENOENT') throw new CheckpointError(path, 'sidecar is missing, so the checkpoint is incomplete (was the save interrupted?)', { cause: e });
    throw new CheckpointError(path, `cannot read sidecar (${errno(e) ?? String(e)})`, { cause: e });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new CheckpointError(path, `sidecar is not valid JSON (${e instanceof Error ? e.message : String(e)})`, { cause: e });
  }
  let sc: Sidecar;
  try {
    sc = validate(sidecarSchema, raw, 'sidecar');
  } catch (e) {
    if (e instanceof ConfigError) throw new CheckpointError(path, e.message, { cause: e });
    throw e;
  }
  const { sha256: recorded, ...body } = sc;
  const actual = sidecarHash(body);
  if (actual !== recorded)
    throw new CheckpointError(path, `sidecar SHA-256 mismatch: it records ${recorded}, its contents hash to ${actual}; it was edited or corrupted (the hash covers the run state too: data position, learning-rate scale, settings)`);
  const m = SIDECAR_RE.exec(basename(path));
  if (m && Number(m[1]) !== sc.step) throw new CheckpointError(path, `sidecar records step ${sc.step} but its file name says ${Number(m[1])}`);
  if (sc.weights.file !== `${stem(sc.step)}.safetensors`) {
    throw new CheckpointError(path, `sidecar names weights file '${sc.weights.file}', expected '${stem(sc.step)}.safetensors' for step ${sc.step}`);
  }
  return sc;
}

/**
 * The newest checkpoint in `dir` that passes full verification (Note [One corruption policy]), loaded, or undefined.
 * `onSkip` hears about each newer one passed over, with what was wrong with it.
 *
 * Note [One corruption policy]: a checkpoint counts only when everything checks: the sidecar's schema and its own
 * SHA-256 (run state included), the weights' size and SHA-256, the strict safetensors parse and the step in its
 * metadata. The newest checkpoint that passes is used; every newer one is skipped with a warning naming the file
 * and the fault, never silently, and a damaged checkpoint is never deleted by pruning (only an explicit overwrite).
 */
export async function newestValidCheckpoint(
  dir: string,
  opts: { onSkip?: (path: string, reason: string) => void; /** Only this run's checkpoints count; others are passed over silently. */ run?: string } = {},
): Promise<LoadedCheckpoint | undefined> {
  const sidecars = new Map<number, string>();
  const weightsOnly: number[] = [];
  const files = await checkpointFiles(dir);
  for (const f of files) if (SIDECAR_RE.test(f.name)) sidecars.set(f.step, join(dir, f.name));
  for (const f of files) if (WEIGHTS_RE.test(f.name) && !sidecars.has(f.step)) weightsOnly.push(f.step);
  const steps = [...new Set([...sidecars.keys(), ...weightsOnly])].sort((a, b) => b - a);
  for (const step of steps) {
    const path = sidecars.get(step);
    if (path === undefined) {
      // Weights without a sidecar: an interrupted save (or a lost sidecar); worth a word only above a good one.
      opts.onSkip?.(join(dir, `${stem(step)}.safetensors`), 'weights without a sidecar (an interrupted save?)');
      continue;
    }
    try {
      const owner = opts.run === undefined ? undefined : await ownerOf(path);
      if (owner !== undefined && owner !== opts.run) continue;
      return await loadSidecarCheckpoint(path);
    } catch (e) {
      if (!(e instanceof CheckpointError)) throw e;
      opts.onSkip?.(path, e.message);
    }
  }
  return undefined;
}

/** The sidecar path of the newest checkpoint in `dir` that passes full verification (see newestValidCheckpoint). */
export async function latestCheckpoint(dir: string, opts: { onSkip?: (path: string, reason: string) => void } = {}): Promise<string | undefined> {
  return (await newestValidCheckpoint(dir, opts))?.path;
}

/**
 * Loads a checkpoint given its sidecar, its weights file, or a directory (the latest complete one).
 * Verifies the sidecar schema, the weights' size and SHA-256, then parses them strictly; any problem is a
 * CheckpointError naming the file, and nothing is returned unless everything checked out.
 */
export async function loadCheckpoint(pathOrDir: string): Promise<LoadedCheckpoint> {
  let st;
  try {
    st = await stat(pathOrDir);
  } catch (e) {
    if (errno(e) !== 'ENOENT') throw new CheckpointError(pathOrDir, `cannot access (${errno(e) ?? String(e)})`, { cause: e });
    st = undefined;
  }
  let sidecarPath: string;
  if (st?.isDirectory()) {
    const skipped: string[] = [];
    const latest = await newestValidCheckpoint(pathOrDir, { onSkip: (p, why) => skipped.push(`${basename(p)}: ${why}`) });
    if (latest === undefined)
      throw new CheckpointError(pathOrDir, `no complete checkpoint (ckpt-*.json with its weights) in this directory${skipped.length ? `; skipped:\n  ${skipped.join('\n  ')}` : ''}`);
    return latest;
  } else if (pathOrDir.endsWith('.safetensors')) {
    sidecarPath = pathOrDir.slice(0, -'.safetensors'.length) + '.json';
  } else if (pathOrDir.endsWith('.json')) {
    sidecarPath = pathOrDir;
  } else if (st === undefined) {
    throw new CheckpointError(pathOrDir, 'no such checkpoint file or directory');
  } else {
    throw new CheckpointError(pathOrDir, 'expected a checkpoint directory, a ckpt-*.json sidecar or a ckpt-*.safetensors file');
  }
  return loadSidecarCheckpoint(sidecarPath);
}

/** Loads and fully verifies the checkpoint of one sidecar (Note [One corruption policy]). */
async function loadSidecarCheckpoint(sidecarPath: string): Promise<LoadedCheckpoint> {
  const sc = await readSidecar(sidecarPath);
  const weightsPath = join(dirname(sidecarPath), sc.weights.file);
  let bytes: Uint8Array;
  try {
    bytes = await readFile(weightsPath);
  } catch (e) {
    const why = errno(e) === 'ENOENT' ? 'is missing' : `cannot be read (${errno(e) ?? String(e)})`;
    throw new CheckpointError(weightsPath, `weights file ${why}; sidecar ${sidecarPath} expects ${sc.weights.bytes} bytes`, { cause: e });
  }
  if (bytes.length !== sc.weights.bytes) {
    throw new CheckpointError(weightsPath, `expected ${sc.weights.bytes} bytes (per ${basename(sidecarPath)}), found ${bytes.length}: ${bytes.length < sc.weights.bytes ? 'truncated' : 'extra data'}`);
  }
  const digest = sha256(bytes);
  if (digest !== sc.weights.sha256) {
    throw new CheckpointError(weightsPath, `SHA-256 mismatch: expected ${sc.weights.sha256} (per ${basename(sidecarPath)}), found ${digest}; the file is corrupted`);
  }
  const { tensors, metadata } = readSafetensors(bytes, weightsPath);
  if (metadata['step'] !== undefined && metadata['step'] !== String(sc.step)) {
    throw new CheckpointError(weightsPath, `weights metadata says step ${metadata['step']}, sidecar says ${sc.step}`);
  }
  return { step: sc.step, tensors, state: sc.state, run: sc.run, path: sidecarPath };
}
