// npm run build:prebuilt: builds the addon that ships in the npm package (prebuilds/<platform>-<arch>/towerline.node)
// and the towerline.json that src/native/load.ts checks before loading it.
//
// The build is portable (CMake option TOWERLINE_PORTABLE: libstdc++ linked statically, no CUDA backend) and
// then checked, failing loudly: it must need no shared library beyond glibc's and libgcc_s (no libstdc++, no OpenBLAS: that one is
// loaded at run time, Note [OpenBLAS at run time]), and no CPU instruction beyond the baseline ISA outside the
// functions the code picks by CPUID (Note [Kernel ISA]: their names carry Avx2 or Avx512, followed by their arguments
// or template arguments, e.g. microAvx2(...), runAvx512<...>(...)). The highest GLIBC_x.y symbol version it uses is
// recorded. The result is test-loaded with and without OpenBLAS.
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const out = join(root, 'build-prebuilt');
const target = `${process.platform}-${process.arch}`;
const fail = (msg) => {
  console.error(`build:prebuilt: ${msg}`);
  process.exit(1);
};
const run = (cmd, args, opts = {}) => execFileSync(cmd, args, { cwd: root, encoding: 'utf8', maxBuffer: 1 << 28, ...opts });

if (process.platform !== 'linux') fail(`only linux prebuilt addons are made here (this is ${target})`);

// --check (npm's prepack): the prebuilt addon exists and is newer than every native source, else stop the pack.
if (process.argv.includes('--check')) {
  const newest = (p) => (statSync(p).isDirectory() ? Math.max(0, ...readdirSync(p).map((e) => newest(join(p, e)))) : statSync(p).mtimeMs);
  const addon = join(root, 'prebuilds', 'linux-x64', 'towerline.node');
  if (!existsSync(addon)) fail('prebuilds/linux-x64/towerline.node is missing: run `npm run build:prebuilt` before packing');
  if (statSync(addon).mtimeMs < Math.max(newest(join(root, 'cpp')), newest(join(root, 'CMakeLists.txt')))) {
    fail('prebuilds/linux-x64/towerline.node is older than cpp/ or CMakeLists.txt: run `npm run build:prebuilt` before packing');
  }
  process.exit(0);
}

// The CPU baseline of each architecture (what the compiler targets without -march) and the /proc/cpuinfo flags that
// stand for it; the addon is checked below not to use more.
const BASELINE = {
  x64: {
    cpu: 'x86-64 baseline (SSE2); the AVX2(+FMA GEMM) and AVX-512 kernels are chosen at run time by CPUID',
    flags: ['sse2'],
    wide: /%[yz]mm/,
    dispatched: /Avx(2|512)[(<]/,
  },
}[process.arch];
if (!BASELINE) fail(`no CPU baseline is defined for ${process.arch} yet (add it to BASELINE with its check)`);

const cmakeJs = createRequire(join(root, 'package.json')).resolve('cmake-js/bin/cmake-js');
// cmake-js keeps a configured build's cache and then ignores --CD options: start from a fresh configuration so the
// options below always hold (objects already built with the same flags are reused).
rmSync(join(out, 'CMakeCache.txt'), { force: true });
run(process.execPath, [cmakeJs, 'compile', '--out', out, '--CDTOWERLINE_PORTABLE=ON', '--CDTOWERLINE_CUDA=OFF', '--CDTOWERLINE_GLOO=OFF'], { stdio: 'inherit' });
const built = join(out, 'Release', 'towerline.node');
// 1. Shared libraries: glibc's and libgcc_s only (libgcc_s is part of every glibc system's base).
const needed = [...run('objdump', ['-p', built]).matchAll(/^\s*NEEDED\s+(\S+)/gm)].map((m) => m[1]);
const allowed = /^(libc|libm|libdl|libpthread|librt|libgcc_s|ld-linux[-\w]*)\.so/;
const extra = needed.filter((n) => !allowed.test(n));
if (extra.length) fail(`the prebuilt addon needs ${extra.join(', ')}; only glibc's and libgcc_s are allowed (NEEDED: ${needed.join(', ')})`);

// 2. The glibc it needs: the highest GLIBC_x.y among the symbols it imports.
const versions = [...run('objdump', ['-T', built]).matchAll(/GLIBC_(\d+(?:\.\d+)+)/g)].map((m) => m[1]);
const glibc = versions.sort((a, b) => a.localeCompare(b, 'en', { numeric: true })).at(-1);
if (!glibc) fail('no GLIBC symbol versions found in the addon');

// 3. No wide vector instructions outside the CPUID-dispatched functions.
const asm = run('objdump', ['-d', '--no-show-raw-insn', '-C', built]);
const offenders = new Set();
let fn = '';
for (const line of asm.split('\n')) {
  const head = /^[0-9a-f]+ <(.*)>:$/.exec(line);
  if (head) fn = head[1];
  else if (BASELINE.wide.test(line) && !BASELINE.dispatched.test(fn)) offenders.add(fn);
}
if (offenders.size) fail(`instructions beyond the ${process.arch} baseline outside CPUID-dispatched code in: ${[...offenders].join('; ')}`);

// 4. Install a stripped copy (the check above needs the symbols) with its description.
const dir = join(root, 'prebuilds', target);
mkdirSync(dir, { recursive: true });
copyFileSync(built, join(dir, 'towerline.node'));
run('strip', ['--strip-unneeded', join(dir, 'towerline.node')]);
const cxx = /CMAKE_CXX_COMPILER:\w+=(.*)/.exec(readFileSync(join(out, 'CMakeCache.txt'), 'utf8'))?.[1] ?? 'c++';
let commit;
try {
  commit = run('git', ['rev-parse', 'HEAD'], { stdio: ['ignore', 'pipe', 'ignore'] }).trim();
} catch {
  // not a git checkout
}
const info = {
  platform: process.platform,
  arch: process.arch,
  napi: pkg.binary.napi_versions[0],
  glibc,
  cpu: BASELINE.cpu,
  cpuFlags: BASELINE.flags,
  gemm: 'OpenBLAS when libopenblas.so.0 loads at run time (dlopen), else the built-in kernel (AVX2+FMA or scalar)',
  kernels: 'elementwise, optimizer and gather loops on one path per process: AVX-512, AVX2 or scalar by CPUID (TOWERLINE_ISA overrides)',
  built: { node: process.version, compiler: run(cxx, ['--version']).split('\n')[0], date: new Date().toISOString(), ...(commit ? { commit } : {}) },
};
writeFileSync(join(dir, 'towerline.json'), JSON.stringify(info, null, 2) + '\n');

// 5. It loads, with OpenBLAS off and in the default lookup.
for (const env of [{ TOWERLINE_OPENBLAS: '0' }, {}]) {
  const probe = spawnSync(process.execPath, ['-e', `console.log(require(${JSON.stringify(join(dir, 'towerline.node'))}).gemmInfo().impl)`], {
    encoding: 'utf8',
    env: { ...process.env, ...env },
  });
  if (probe.status !== 0) fail(`the prebuilt addon does not load: ${probe.stderr}`);
  console.log(`build:prebuilt: loads${env.TOWERLINE_OPENBLAS ? ' (TOWERLINE_OPENBLAS=0)' : ''}: GEMM ${probe.stdout.trim()}`);
}
console.log(`build:prebuilt: prebuilds/${target}/towerline.node (${needed.join(', ')}; glibc >= ${glibc}; ${BASELINE.cpu})`);
