// src/native/load.ts: which addon file a process loads (Note [Addon lookup]) and why a prebuilt one is refused.
import { describe, it, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkPrebuilt, cpuFlags, findAddon, glibcVersion, packageRoot, type PrebuiltInfo } from '../src/native/load.js';

const target = `${process.platform}-${process.arch}`;

/** A package root with a prebuilt addon described by `info` (the .node file is a placeholder: nothing loads it). */
function fakePackage(info: Partial<PrebuiltInfo> | 'no-json' | 'no-addon', withBuild = false): string {
  const root = mkdtempSync(join(tmpdir(), 'towerline-load-'));
  writeFileSync(join(root, 'package.json'), JSON.stringify({ name: 'towerline' }));
  if (info !== 'no-addon') {
    const dir = join(root, 'prebuilds', target);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'towerline.node'), '');
    if (info !== 'no-json') {
      const base: PrebuiltInfo = { platform: process.platform, arch: process.arch, napi: 8, glibc: '2.17', cpu: 'baseline', cpuFlags: [], gemm: '', built: { node: '', compiler: '', date: '' } };
      writeFileSync(join(dir, 'towerline.json'), JSON.stringify({ ...base, ...info }));
    }
  }
  if (withBuild) {
    mkdirSync(join(root, 'build', 'Release'), { recursive: true });
    writeFileSync(join(root, 'build', 'Release', 'towerline.node'), '');
  }
  return root;
}

describe('finding the native addon', () => {
  const saved = process.env.TOWERLINE_ADDON;
  afterEach(() => {
    if (saved === undefined) delete process.env.TOWERLINE_ADDON;
    else process.env.TOWERLINE_ADDON = saved;
  });

  it('the package root is the nearest towerline package.json', () => {
    const root = fakePackage({});
    assert.equal(packageRoot(join(root, 'dist', 'native')), root);
    assert.throws(() => packageRoot(tmpdir()), /cannot find the package root above/);
  });

  it('a matching prebuilt addon is used when there is no source build', () => {
    delete process.env.TOWERLINE_ADDON;
    const root = fakePackage({});
    assert.equal(checkPrebuilt(root).ok, true);
    assert.deepEqual(findAddon(root), { path: join(root, 'prebuilds', target, 'towerline.node'), source: 'prebuilt' });
  });

  it('a source build wins over the prebuilt one, and TOWERLINE_ADDON over both', () => {
    const root = fakePackage({}, true);
    delete process.env.TOWERLINE_ADDON;
    assert.equal(findAddon(root).source, 'source build');
    process.env.TOWERLINE_ADDON = join(root, 'build', 'Release', 'towerline.node');
    assert.equal(findAddon(root).source, 'TOWERLINE_ADDON');
    process.env.TOWERLINE_ADDON = join(root, 'nope.node');
    assert.throws(() => findAddon(root), /TOWERLINE_ADDON=.*nope\.node does not exist/);
  });

  it('a prebuilt addon that does not fit is refused, saying why', () => {
    const cases: [Parameters<typeof fakePackage>[0], RegExp][] = [
      ['no-addon', new RegExp(`no prebuilt addon for ${target}`)],
      ['no-json', /towerline\.json is missing or unreadable/],
      [{ arch: 'mips' }, new RegExp(`is for ${process.platform}-mips, this is ${target}`)],
      [{ napi: 999 }, /needs Node-API 999, Node v[\d.]+ has \d+/],
      [{ cpuFlags: ['no_such_cpu_flag'] }, /needs CPU flags no_such_cpu_flag/],
    ];
    if (glibcVersion() !== undefined) cases.push([{ glibc: '99.0' }, /needs glibc >= 99\.0, this system has \d+\.\d+/]);
    for (const [info, reason] of cases) {
      const check = checkPrebuilt(fakePackage(info));
      assert.equal(check.ok, false, JSON.stringify(info));
      if (!check.ok) assert.match(check.reason, reason);
    }
  });

  it('with nothing to load, the error names what is missing and how to build it', () => {
    delete process.env.TOWERLINE_ADDON;
    const root = fakePackage({ napi: 999 });
    assert.throws(() => findAddon(root), (e: Error) => {
      assert.match(e.message, /build[/\\]Release[/\\]towerline\.node does not exist and the prebuilt addon needs Node-API 999/);
      assert.match(e.message, /npm rebuild towerline/);
      assert.match(e.message, /cmake >= 3\.18, a C\+\+17 compiler .* and make or ninja/);
      return true;
    });
  });

  it('reads the CPU flags on Linux (the prebuilt addon needs sse2 on x64)', { skip: process.platform !== 'linux' }, () => {
    const flags = cpuFlags();
    assert.ok(flags && flags.size > 0);
    if (process.arch === 'x64') assert.ok(flags.has('sse2'));
  });
});
