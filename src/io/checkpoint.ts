// Atomic, verified training checkpoints: a safetensors weights file plus a JSON sidecar written last.
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { z } from 'zod';
import { CheckpointError, readSafetensors, writeSafetensors, type TensorIn, type TensorOut } from './safetensors.js';
import { ConfigError, validate } from '../util/validate.js';

export { CheckpointError } from './safetensors.js';

export const CHECKPOINT_FORMAT = 'towerline-checkpoint';
export const CHECKPOINT_VERSION = 1;

export interface CheckpointToSave {
  step: number;
  tensors: readonly TensorIn[];
  /** Any JSON: optimizer hyper-state, RNG state, data position, model spec. */
  state: Record<string, unknown>;
}

export interface LoadedCheckpoint {
  step: number;
  tensors: Map<string, TensorOut>;
  state: Record<string, unknown>;
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
    version: z.literal(CHECKPOINT_VERSION),
    step: z.number().int().nonnegative(),
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
  })
  .strict();
type Sidecar = z.infer<typeof sidecarSchema>;

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
function stateJson(sidecar: Sidecar): string {
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
 * Saves step `ckpt.step` into `dir` and prunes to the newest `opts.keep` checkpoints (by step).
 * Weights go first, the sidecar last: a checkpoint exists only once its sidecar does. Returns the sidecar path.
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
  const sidecar: Sidecar = {
    format: CHECKPOINT_FORMAT,
    version: CHECKPOINT_VERSION,
    step: ckpt.step,
    weights: { file: weightsName, bytes: weights.length, sha256: sha256(weights) },
    savedAt: new Date().toISOString(),
    state: ckpt.state,
  };
  // Serialise before touching the disk so bad state cannot leave a half-written checkpoint behind.
  const sidecarBytes = new TextEncoder().encode(stateJson(sidecar) + '\n');

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
  await prune(dir, opts.keep);
  return sidecarPath;
}

/** Deletes checkpoints beyond the newest `keep`, plus crash debris (temp files, orphan weights) older than the newest. */
async function prune(dir: string, keep: number): Promise<void> {
  const names = await readdir(dir);
  const complete = names
    .map((n) => SIDECAR_RE.exec(n))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => Number(m[1]))
    .sort((a, b) => b - a);
  const kept = new Set(complete.slice(0, keep));
  const newest = complete[0];
  if (newest === undefined) return;
  for (const step of complete.slice(keep)) {
    // Sidecar first: once it is gone the checkpoint no longer counts, whatever happens to the weights.
    await rm(join(dir, `${stem(step)}.json`), { force: true });
    await rm(join(dir, `${stem(step)}.safetensors`), { force: true });
  }
  for (const n of names) {
    const orphan = WEIGHTS_RE.exec(n);
    const temp = TEMP_RE.exec(n);
    const m = orphan ?? temp;
    if (!m) continue;
    const step = Number(m[1]);
    // Anything at or below the newest step that is not a kept checkpoint's weights is left over from a crash.
    if (step <= newest && (temp !== null || !kept.has(step))) await rm(join(dir, n), { force: true });
  }
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
  const m = SIDECAR_RE.exec(basename(path));
  if (m && Number(m[1]) !== sc.step) throw new CheckpointError(path, `sidecar records step ${sc.step} but its file name says ${Number(m[1])}`);
  if (sc.weights.file !== `${stem(sc.step)}.safetensors`) {
    throw new CheckpointError(path, `sidecar names weights file '${sc.weights.file}', expected '${stem(sc.step)}.safetensors' for step ${sc.step}`);
  }
  return sc;
}

/**
 * The sidecar path of the highest-step complete checkpoint in `dir` (valid sidecar, weights of the recorded
 * size), or undefined. Temp files and orphan weights are ignored; `onSkip` hears about each sidecar passed over.
 */
export async function latestCheckpoint(dir: string, opts: { onSkip?: (path: string, reason: string) => void } = {}): Promise<string | undefined> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (e) {
    if (errno(e) === 'ENOENT') return undefined;
    throw e;
  }
  const candidates = names
    .map((n) => ({ n, m: SIDECAR_RE.exec(n) }))
    .filter((c) => c.m !== null)
    .sort((a, b) => Number(b.m![1]) - Number(a.m![1]));
  for (const { n } of candidates) {
    const path = join(dir, n);
    try {
      const sc = await readSidecar(path);
      const st = await stat(join(dir, sc.weights.file)).catch(() => undefined);
      if (!st?.isFile()) throw new CheckpointError(path, `weights file ${sc.weights.file} is missing`);
      if (st.size !== sc.weights.bytes) throw new CheckpointError(path, `weights file ${sc.weights.file} is ${st.size} bytes, sidecar expects ${sc.weights.bytes}`);
      return path;
    } catch (e) {
      if (!(e instanceof CheckpointError)) throw e;
      opts.onSkip?.(path, e.message);
    }
  }
  return undefined;
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
    const latest = await latestCheckpoint(pathOrDir);
    if (latest === undefined) throw new CheckpointError(pathOrDir, 'no complete checkpoint (ckpt-*.json with its weights) in this directory');
    sidecarPath = latest;
  } else if (pathOrDir.endsWith('.safetensors')) {
    sidecarPath = pathOrDir.slice(0, -'.safetensors'.length) + '.json';
  } else if (pathOrDir.endsWith('.json')) {
    sidecarPath = pathOrDir;
  } else if (st === undefined) {
    throw new CheckpointError(pathOrDir, 'no such checkpoint file or directory');
  } else {
    throw new CheckpointError(pathOrDir, 'expected a checkpoint directory, a ckpt-*.json sidecar or a ckpt-*.safetensors file');
  }

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
  return { step: sc.step, tensors, state: sc.state, path: sidecarPath };
}
