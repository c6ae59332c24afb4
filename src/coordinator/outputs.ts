// Every output path of a run (checkpoints, TensorBoard logs, the trace) is created and test-written before step 1,
// so a path that cannot be written fails at once, naming the option and the path, instead of after the last step.
import { randomBytes } from 'node:crypto';
import { mkdir, open, rm, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { ConfigError } from '../errors.js';
import type { ResolvedTrainOptions } from '../options.js';

function errno(e: unknown): string {
  return (e as NodeJS.ErrnoException | undefined)?.code ?? String(e);
}

const WHY: Record<string, string> = {
  EEXIST: 'a file is in the way (not a directory)',
  ENOTDIR: 'a part of the path is a file, not a directory',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EROFS: 'the file system is read-only',
  ENOSPC: 'no space left on the device',
  EDQUOT: 'disk quota exceeded',
  EISDIR: 'it is a directory',
  ENAMETOOLONG: 'the name is too long',
};

function fail(option: string, path: string, what: string, e: unknown): never {
  const code = errno(e);
  throw new ConfigError(`${option}: cannot ${what} '${resolve(path)}': ${WHY[code] ?? 'error'} (${code}); choose another path or fix its permissions`, option);
}

/** Creates `dir` (and its parents) and proves it writable with a probe file written, synced and removed. */
export async function prepareDir(dir: string, option: string): Promise<void> {
  const st = await stat(dir).catch(() => undefined);
  if (st && !st.isDirectory()) fail(option, dir, 'use as a directory', Object.assign(new Error(), { code: 'EEXIST' }));
  try {
    await mkdir(dir, { recursive: true });
  } catch (e) {
    fail(option, dir, 'create the directory', e);
  }
  const probe = join(dir, `.towerline-probe-${randomBytes(6).toString('hex')}`);
  try {
    const fh = await open(probe, 'wx');
    try {
      await fh.writeFile('towerline write test\n');
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch (e) {
    fail(option, dir, 'write into the directory', e);
  } finally {
    await rm(probe, { force: true }).catch(() => undefined);
  }
}

/** Creates the file's folder and the file itself (empty; its writer fills it), proving both writable. */
export async function prepareFile(path: string, option: string): Promise<void> {
  await prepareDir(dirname(path), option);
  try {
    const fh = await open(path, 'w');
    await fh.close();
  } catch (e) {
    fail(option, path, 'write the file', e);
  }
}

/** Before step 1: every output path of `o`, in the order the options list them. */
export async function prepareOutputs(o: ResolvedTrainOptions): Promise<void> {
  if (o.checkpoint) await prepareDir(o.checkpoint.dir, 'checkpoint.dir');
  if (o.logDir) await prepareDir(o.logDir, 'logDir');
  if (o.traceFile) await prepareFile(o.traceFile, 'traceFile');
}
