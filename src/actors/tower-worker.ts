// A device actor: a worker_thread that owns one device and its tower; the coordinator drives it over comlink.
import { parentPort, workerData } from 'node:worker_threads';
import * as Comlink from 'comlink';
import nodeEndpoint from 'comlink/dist/esm/node-adapter.mjs';
import { NativeDevice } from '../backend/native-device.js';
import { native } from '../native/addon.js';
import { Tower, type CollectiveSlot, type DeviceDataset } from '../model/tower.js';
import { parseModelSpec } from '../model/spec.js';
import type { ActorStart, BuildReply, BuildRequest, StepReply, StepRequest, TowerActorApi } from './protocol.js';

const start = workerData as ActorStart;
native().setGemmThreads(start.gemmThreads);
const device = NativeDevice.open(start.kind, start.index);
let tower: Tower | undefined;
const datasets = new Map<string, DeviceDataset>();
let gradSlot: CollectiveSlot | undefined;
let weightSlot: CollectiveSlot | undefined;

function need(): Tower {
  if (!tower) throw new Error(`device actor ${device.name}: build() the tower first`);
  return tower;
}

const api: TowerActorApi = {
  async build(req: BuildRequest): Promise<BuildReply> {
    tower?.dispose();
    tower = new Tower(device, parseModelSpec(req.spec), { maxBatch: req.maxBatch, training: req.training });
    return {
      device: device.name,
      inputDim: tower.inputDim,
      outputDim: tower.outputDim,
      paramCount: tower.paramCount,
      gradArena: tower.gradArena,
      weightArena: tower.weightArena,
      params: tower.params.map((p) => ({ name: p.name, shape: p.shape })),
    };
  },
  async initWeights(seed) {
    need().initWeights(seed);
  },
  async uploadDataset(key, images, labels, count, transform) {
    datasets.set(key, need().uploadDataset(images, labels, count, 1 / 255, transform));
  },
  async setCollectives(grad, weights, rank) {
    gradSlot = { comm: grad, rank };
    weightSlot = { comm: weights, rank };
  },
  async broadcastWeights() {
    if (!weightSlot) throw new Error(`device actor ${device.name}: no weight communicator`);
    await need().runWeightCollective(weightSlot);
  },
  // Note [Fault injection]: tests ask for faults per step ('kernel-throw': a real kernel sees an index past the
  // data set; 'exit': the worker dies mid-step; fault.stallMs: the device thread sleeps in a phase; fault.nanAt:
  // a NaN lands in this tower's gradient before the all-reduce). Without a request nothing is added to the
  // step program, so the hot path pays nothing.
  async step(req: StepRequest): Promise<StepReply> {
    const t = need();
    if (req.inject === 'exit') setTimeout(() => process.exit(3), 5);
    let indices = req.indices;
    if (req.inject === 'kernel-throw' && indices) {
      indices = Int32Array.from(indices);
      indices[0] = 1 << 30;
    }
    const src =
      req.dataset !== undefined && indices
        ? { kind: 'indices' as const, dataset: datasets.get(req.dataset)!, indices }
        : { kind: 'direct' as const, x: req.x!, labels: req.labels! };
    if (src.kind === 'indices' && !src.dataset) throw new Error(`device actor ${device.name}: unknown dataset '${req.dataset}'`);
    if (src.kind === 'indices' && src.dataset.transform?.mode === 'random') {
      if (!req.crop || req.crop.length !== 3 * src.indices.length)
        throw new Error(`device actor ${device.name}: dataset '${req.dataset}' has random crops: the step needs 3 crop params per example (${3 * src.indices.length}), got ${req.crop?.length ?? 'none'}`);
      t.setCropParams(req.crop);
    }
    const r = await t.trainStep(src, req.lr, req.t, {
      gradScale: req.gradScale,
      ...(gradSlot ? { collective: gradSlot } : {}),
      ...(req.fault ? { fault: req.fault } : {}),
    });
    return { loss: r.loss, regLoss: r.regLoss, gradNorm: r.gradNorm, timings: r.timings, reduceWaitMs: r.reduceWaitMs, skipped: r.skipped };
  },
  async stepLaunch(key, batch) {
    const ds = datasets.get(key);
    if (!ds) throw new Error(`device actor ${device.name}: unknown dataset '${key}'`);
    return need().stepLaunch(batch, ds, gradSlot);
  },
  async phase() {
    return tower?.currentPhase();
  },
  async firstNonFinite() {
    return need().firstNonFiniteLocal();
  },
  async evaluate(key, useEma) {
    const ds = datasets.get(key);
    if (!ds) throw new Error(`device actor ${device.name}: unknown dataset '${key}'`);
    const r = await need().evaluate(ds, { useEma });
    return { lossSum: r.loss * r.count, correct: Math.round(r.accuracy * r.count), count: r.count };
  },
  async readWeights() {
    return [...need().readWeights('w')];
  },
  async replicaHashes() {
    return need().replicaHashes();
  },
  async readState() {
    return need().readState();
  },
  async writeState(tensors) {
    need().writeState(new Map(tensors));
  },
  async readGradients() {
    return [...need().readWeights('g')];
  },
  async dispose() {
    tower?.dispose();
    tower = undefined;
    await device.close();
  },
};

Comlink.expose(api, nodeEndpoint(parentPort!));
