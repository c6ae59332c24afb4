// A device actor: a worker thread that owns one device and its tower (a TowerHost); the coordinator drives it over
// comlink through its tower port (src/tower-port/worker-port.ts) and launches its step programs directly.
import { parentPort, workerData } from 'node:worker_threads';
import * as Comlink from 'comlink';
import nodeEndpoint from 'comlink/dist/esm/node-adapter.mjs';
import { NativeDevice } from '../backend/native-device.js';
import { TowerHost } from '../tower-port/tower-host.js';
import type { ActorStart } from '../tower-port/protocol.js';

const start = workerData as ActorStart;
Comlink.expose(new TowerHost(NativeDevice.open(start.kind, start.index, { gemmThreads: start.gemmThreads, ...(start.cpus ? { cpus: start.cpus } : {}) })), nodeEndpoint(parentPort!));
