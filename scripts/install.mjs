// npm's install hook: use the prebuilt addon when it matches this machine, else build the addon from source.
//
// Installed as a dependency (the package sits under node_modules/): the prebuilt addon in prebuilds/<platform>-<arch>/
// is checked (dist/native/load.js: platform, arch, Node-API version, glibc, CPU flags) and test-loaded in a child
// process; if it works nothing else runs: no cmake-js, no compiler. Otherwise, or with TOWERLINE_BUILD_FROM_SOURCE=1
// (or `npm install --build-from-source`), the addon is built with cmake-js into build/Release/, after checking that
// cmake, a C++17 compiler and make or ninja are on PATH, and naming the ones that are not.
// In a source checkout (not under node_modules/) the addon is always built from source, as `npm run build:native`.
import { execFileSync, spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { delimiter, dirname, join, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const say = (msg) => console.log(`towerline: ${msg}`);
const isCheckout = !root.split(sep).includes('node_modules');
const truthy = (v) => v !== undefined && v !== '' && v !== '0' && v !== 'false';
const forceSource = truthy(process.env.TOWERLINE_BUILD_FROM_SOURCE) || truthy(process.env.npm_config_build_from_source);

/** The first executable named `name` on PATH, or undefined. */
function onPath(name) {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    const file = join(dir, name);
    try {
      accessSync(file, constants.X_OK);
      return file;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** Tries the prebuilt addon; returns undefined when it is usable, else why not. */
async function prebuiltProblem() {
  const loader = join(root, 'dist', 'native', 'load.js');
  if (!existsSync(loader)) return 'dist/native/load.js is missing (run `npm run build`)';
  const { checkPrebuilt } = await import(pathToFileURL(loader).href);
  const check = checkPrebuilt(root);
  if (!check.ok) return check.reason;
  // The JSON says it fits; loading it proves it (a missing system library would only show here).
  const probe = spawnSync(process.execPath, ['-e', `console.log(require(${JSON.stringify(check.path)}).gemmInfo().impl)`], {
    encoding: 'utf8',
  });
  if (probe.status !== 0) return `the prebuilt addon does not load here: ${(probe.stderr || '').trim().split('\n')[0]}`;
  const i = check.info;
  say(`using the prebuilt addon for ${i.platform}-${i.arch} (Node-API ${i.napi}, glibc >= ${i.glibc}, ${i.cpu}); ` +
    `GEMM: ${probe.stdout.trim()}`);
  return undefined;
}

function buildFromSource(why) {
  say(`building the native addon from source (${why})`);
  const missing = [];
  if (!onPath('cmake')) missing.push('cmake (>= 3.18)');
  const cxx = [process.env.CXX, 'c++', 'g++', 'clang++'].find((c) => c && (c.includes('/') ? existsSync(c) : onPath(c)));
  if (!cxx) missing.push('a C++17 compiler (g++ or clang++)');
  if (!onPath('make') && !onPath('ninja')) missing.push('make or ninja');
  const fixes = missing.length ? ['on Debian/Ubuntu: apt-get install cmake g++ make'] : [];
  let cmakeJs;
  try {
    cmakeJs = createRequire(join(root, 'package.json')).resolve('cmake-js/bin/cmake-js');
    createRequire(join(root, 'package.json')).resolve('node-addon-api');
  } catch {
    missing.push('the npm packages cmake-js and node-addon-api (optional dependencies: was the install run with --omit=optional?)');
    fixes.push('install without --omit=optional (or `npm install cmake-js node-addon-api`)');
  }
  if (missing.length) {
    console.error(
      `towerline: cannot build the native addon from source: missing ${missing.join(', ')}.\n` +
        `  To fix: ${fixes.join('; ')}; then run \`npm rebuild towerline\`.\n` +
        (isCheckout ? '' : `  (A build is needed only because the prebuilt addon cannot be used: ${why}.)\n`),
    );
    process.exit(1);
  }
  try {
    execFileSync(process.execPath, [cmakeJs, 'compile', '--out', 'build'], { cwd: root, stdio: 'inherit' });
  } catch (e) {
    console.error(`towerline: the source build failed (cmake-js exited with ${e.status ?? e.message}); see the output above.`);
    process.exit(1);
  }
  say(`built ${join(root, 'build', 'Release', 'towerline.node')}`);
}

if (isCheckout) buildFromSource('source checkout');
else if (forceSource) buildFromSource('TOWERLINE_BUILD_FROM_SOURCE / --build-from-source');
else {
  const problem = await prebuiltProblem();
  if (problem !== undefined) buildFromSource(`the prebuilt addon cannot be used: ${problem}`);
}
