// GPU inspection on any machine: topology(), formatTopology, the P2P self-test's empty case, and the clear error a
// 'cuda:...' device list gives where there is no GPU. (With GPUs, test/gpu-towers.test.ts covers the rest.)
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { formatTopology, topology, type Topology } from '../src/topology.js';
import { parseDevices } from '../src/devices.js';
import { createRuntime } from '../src/runtime.js';
import { native } from '../src/native/addon.js';
import { ConfigError } from '../src/util/validate.js';

const cudaCount = (): number => (native().backendKinds().includes('cuda') ? native().deviceCount('cuda') : 0);

describe('topology', () => {
  it('topology() never throws, and lists no GPUs exactly when there are none', () => {
    const t = topology();
    assert.ok(Array.isArray(t.gpus) && Array.isArray(t.links));
    assert.equal(t.gpus.length, cudaCount());
    if (t.gpus.length === 0) assert.deepEqual(t.links, []);
    // The addon's own function too (src/topology.ts only wraps it).
    const raw = native().topology();
    assert.equal(raw.gpus.length, t.gpus.length);
  });

  it('with GPUs, there is one link per unordered pair, SELF on the diagonal', { skip: cudaCount() === 0 && 'no CUDA devices' }, () => {
    const t = topology();
    const n = t.gpus.length;
    assert.equal(t.links.length, (n * (n + 1)) / 2);
    for (const l of t.links) assert.equal(l.kind === 'SELF', l.a === l.b);
  });

  it('formatTopology without GPUs prints the CPU towers line', () => {
    const empty: Topology = { gpus: [], links: [] };
    assert.equal(formatTopology(empty, undefined, { cpuCount: 8 }), 'no CUDA devices; CPU towers: cpu:0..cpu:7 (host memory transport)');
    assert.match(formatTopology(empty), /^no CUDA devices; CPU towers: cpu:0\.\.cpu:\d+ \(host memory transport\)$/);
  });

  it('formatTopology prints an nvidia-smi-like matrix, the P2P matrix and measured GB/s', () => {
    const t: Topology = {
      gpus: [0, 1, 2].map((index) => ({ index, name: 'Fake GPU', pciBusId: `0000:0${index}:00.0`, memoryBytes: 2 ** 34 })),
      links: [
        { a: 0, b: 0, kind: 'SELF', p2p: true },
        { a: 0, b: 1, kind: 'NVLINK', p2p: true, nvlinks: 4, perfRank: 0 },
        { a: 0, b: 2, kind: 'PIX', p2p: false },
        { a: 1, b: 1, kind: 'SELF', p2p: true },
        { a: 1, b: 2, kind: 'SYS', p2p: false },
        { a: 2, b: 2, kind: 'SELF', p2p: true },
      ],
      source: 'nvml',
    };
    const st = [
      { src: 0, dst: 1, p2p: true, ok: true, gbps: 91.25, detail: '' },
      { src: 0, dst: 2, p2p: false, ok: false, gbps: 0, detail: 'corrupted words' },
      { src: 2, dst: 1, p2p: false, ok: true, gbps: 9.5, detail: '' },
    ];
    const s = formatTopology(t, st);
    const row0 = s.split('\n').find((l) => l.startsWith('GPU0 '))!;
    assert.deepEqual(row0.trim().split(/\s+/), ['GPU0', 'X', 'NV4', 'PIX']);
    assert.match(s, /GPU0: Fake GPU, PCI 0000:00:00\.0, 16\.0 GiB/);
    assert.match(s, /P2P used by the transports/);
    const p2pRows = s.split('\n').filter((l) => /^GPU1 /.test(l));
    assert.deepEqual(p2pRows[1]!.trim().split(/\s+/), ['GPU1', 'yes', 'X', 'no']);
    assert.deepEqual(p2pRows[2]!.trim().split(/\s+/), ['GPU1', '-', 'X', '-']);
    const gb = s.split('\n').filter((l) => /^GPU0 /.test(l))[2]!;
    assert.deepEqual(gb.trim().split(/\s+/), ['GPU0', 'X', '91.3', 'FAIL']);
    assert.match(s, /9\.5\*/);
    assert.match(s, /GPU0 -> GPU2: corrupted words/);
  });

  it('p2pSelfTest([]) returns [], and setP2PEnabled is accepted', () => {
    assert.deepEqual(native().p2pSelfTest([]), []);
    native().setP2PEnabled(true);
    if (cudaCount() === 0) assert.throws(() => native().p2pSelfTest([0]), /cuda|CUDA|GPU/);
  });
});

describe("'cuda:...' devices without a GPU", { skip: cudaCount() > 0 && 'this machine has CUDA devices' }, () => {
  for (const spec of ['cuda:0', 'cuda:all', 'cuda:0x4'])
    it(`${spec} is a ConfigError saying no GPU is present and suggesting cpu devices`, () => {
      assert.throws(
        () => parseDevices(spec),
        (e: Error) => e instanceof ConfigError && e.field === 'devices' && /no GPU is present/.test(e.message) && /cpu\*2/.test(e.message),
      );
    });

  it('createRuntime rejects with the same error before starting any worker', async () => {
    await assert.rejects(createRuntime({ devices: 'cuda:0' }), (e: Error) => e instanceof ConfigError && /no GPU is present/.test(e.message));
  });
});
