// Finds the native addon: TOWERLINE_ADDON, else a source build (build/Release), else the prebuilt one shipped in the
// package (prebuilds/<platform>-<arch>/) when it matches this machine. scripts/install.mjs uses the same checks.
import { createRequire } from 'node:module';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

// Note [Addon lookup]
// Order: (1) TOWERLINE_ADDON=<path> (another build: a CUDA build, a debug build); (2) <package>/build/Release/
// towerline.node, which exists only where someone built from source (the repo checkout, or an install whose prebuilt
// did not match: scripts/install.mjs then builds it), so it wins over the prebuilt; (3) the prebuilt addon, used when
// its towerline.json matches the platform, the architecture, the Node-API version, glibc and the CPU's flags.
// The prebuilt needs no OpenBLAS and no compiler: Note [OpenBLAS at run time] in cpp/cpu/gemm_openblas.cc.

/** prebuilds/<platform>-<arch>/towerline.json: what the prebuilt addon next to it was built for (npm run prebuild). */
export interface PrebuiltInfo {
  platform: string;
  arch: string;
  /** The Node-API version the addon is compiled against (it loads on any Node whose process.versions.napi >= it). */
  napi: number;
  /** The lowest glibc it links against ("2.34"), absent for non-glibc builds. */
  glibc?: string;
  /** The CPU baseline in words, and the /proc/cpuinfo flags it needs (checked before loading). */
  cpu: string;
  cpuFlags: string[];
  /** How GEMM is chosen at run time, in words. */
  gemm: string;
  built: { node: string; compiler: string; date: string; commit?: string };
}

/** Where the addon was found, and why that one. */
export interface AddonLocation {
  path: string;
  source: 'TOWERLINE_ADDON' | 'source build' | 'prebuilt';
}

/** What the process runs on: the addon's file and origin, and the GEMM in use (e.g. "openblas (dlopen ...)"). */
export interface AddonInfo extends AddonLocation {
  gemm: string;
  /** The CPU kernels' vector path in this process: 'avx512' | 'avx2' | 'scalar' (Note [Kernel ISA], TOWERLINE_ISA). */
  kernels: string;
}

export type PrebuiltCheck = { ok: true; path: string; info: PrebuiltInfo } | { ok: false; reason: string };

/** The package root: the nearest directory above this file whose package.json is towerline's. */
export function packageRoot(from: string = dirname(fileURLToPath(import.meta.url))): string {
  let dir = from;
  for (let i = 0; i < 6; i++) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        if ((JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'towerline') return dir;
      } catch {
        // not ours: keep walking up
      }
    }
    dir = dirname(dir);
  }
  throw new Error(`towerline: cannot find the package root above ${from} (no package.json named "towerline")`);
}

function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number), pb = b.split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/** This machine's glibc version, or undefined (musl, or not Linux). */
export function glibcVersion(): string | undefined {
  const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header;
  return header?.glibcVersionRuntime;
}

/** The CPU's feature flags from /proc/cpuinfo (Linux), or undefined where unknown. */
export function cpuFlags(): Set<string> | undefined {
  try {
    const line = readFileSync('/proc/cpuinfo', 'utf8').split('\n').find((l) => /^(flags|Features)\s*:/.test(l));
    return line ? new Set(line.slice(line.indexOf(':') + 1).trim().split(/\s+/)) : undefined;
  } catch {
    return undefined;
  }
}

/** Whether the prebuilt addon in `root` can run here, and if not, why (named, for the install log and errors). */
export function checkPrebuilt(root: string = packageRoot()): PrebuiltCheck {
  const target = `${process.platform}-${process.arch}`;
  const dir = join(root, 'prebuilds', target);
  const path = join(dir, 'towerline.node');
  if (!existsSync(path)) return { ok: false, reason: `no prebuilt addon for ${target} in this package` };
  let info: PrebuiltInfo;
  try {
    info = JSON.parse(readFileSync(join(dir, 'towerline.json'), 'utf8')) as PrebuiltInfo;
  } catch (e) {
    return { ok: false, reason: `prebuilds/${target}/towerline.json is missing or unreadable (${(e as Error).message})` };
  }
  if (info.platform !== process.platform || info.arch !== process.arch) {
    return { ok: false, reason: `the prebuilt addon is for ${info.platform}-${info.arch}, this is ${target}` };
  }
  const napi = Number(process.versions.napi ?? 0);
  if (!(napi >= info.napi)) {
    return { ok: false, reason: `the prebuilt addon needs Node-API ${info.napi}, Node ${process.version} has ${napi}` };
  }
  if (info.glibc !== undefined) {
    const have = glibcVersion();
    if (have === undefined) return { ok: false, reason: `the prebuilt addon needs glibc >= ${info.glibc}; this system has no glibc (musl?)` };
    if (compareVersions(have, info.glibc) < 0) {
      return { ok: false, reason: `the prebuilt addon needs glibc >= ${info.glibc}, this system has ${have}` };
    }
  }
  const flags = cpuFlags();
  const missing = flags ? info.cpuFlags.filter((f) => !flags.has(f)) : [];
  if (missing.length) return { ok: false, reason: `the prebuilt addon needs CPU flags ${missing.join(', ')} (${info.cpu})` };
  return { ok: true, path, info };
}

/** Where to load the addon from (Note [Addon lookup]); throws naming every place tried and how to fix it. */
export function findAddon(root?: string): AddonLocation {
  const override = process.env.TOWERLINE_ADDON;
  if (override) {
    if (!existsSync(override)) {
      throw new Error(`towerline: TOWERLINE_ADDON=${override} does not exist; unset it or point it at a built towerline.node`);
    }
    return { path: override, source: 'TOWERLINE_ADDON' };
  }
  const base = root ?? packageRoot();
  const built = join(base, 'build', 'Release', 'towerline.node');
  if (existsSync(built)) return { path: built, source: 'source build' };
  const prebuilt = checkPrebuilt(base);
  if (prebuilt.ok) return { path: prebuilt.path, source: 'prebuilt' };
  throw new Error(
    `towerline: no native addon to load: ${built} does not exist and ${prebuilt.reason}. ` +
      'Build it from source with `npm rebuild towerline` in your app (or `npm run build:native` in a checkout); ' +
      'that needs cmake >= 3.18, a C++17 compiler (g++ or clang++) and make or ninja.',
  );
}

let loaded: { addon: unknown; location: AddonLocation } | undefined;

/** Loads the addon once per thread (each worker_thread loads its own copy of the module state). */
export function loadAddon<T>(): T {
  if (!loaded) {
    const location = findAddon();
    let addon: unknown;
    try {
      addon = createRequire(import.meta.url)(location.path);
    } catch (e) {
      throw new Error(
        `towerline: the ${location.source} addon ${location.path} failed to load: ${(e as Error).message}. ` +
          (location.source === 'prebuilt'
            ? 'Build from source instead: `TOWERLINE_BUILD_FROM_SOURCE=1 npm rebuild towerline` (needs cmake, a C++17 compiler, make).'
            : 'Rebuild it: `npm rebuild towerline` (or `npm run build:native` in a checkout).'),
        { cause: e },
      );
    }
    loaded = { addon, location };
  }
  return loaded.addon as T;
}

/** Which addon this process runs and which GEMM it uses, e.g. { source: 'prebuilt', gemm: 'builtin-avx2 (libopenblas.so.0 not found)' }. */
export function addonInfo(): AddonInfo {
  const addon = loadAddon<{ gemmInfo(): { impl: string }; kernelIsa(): { isa: string } }>();
  return { ...loaded!.location, gemm: addon.gemmInfo().impl, kernels: addon.kernelIsa().isa };
}
