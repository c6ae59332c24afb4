// Opening the towers of a device list: one worker-thread port per device slot (production), or in-process ports
// (tests and embedding without workers) over native devices or the float64 reference backend.
import os from 'node:os';
import { NativeDevice } from '../backend/native-device.js';
import { ReferenceBackend } from '../reference/reference-backend.js';
import type { DeviceSlot } from '../devices.js';
import type { TowerPort } from './port.js';
import { WorkerTowerPort } from './worker-port.js';
import { InProcessTowerPort } from './in-process-port.js';
import { cpuLayout } from './layout.js';

/**
 * `processesOnHost`: the processes of a multi-process run on this machine (they share its cores); default 1.
 * `cores`: the cores to lay the CPU towers out on (Note [CPU layout]); default os.availableParallelism().
 */
export type PortOpener = (slots: DeviceSlot[], o: { callMs: number; processesOnHost?: number; cores?: number }) => TowerPort[];

/** One device actor per slot; CPU towers (of every process on this machine) share the cores (Note [CPU layout]). */
export const workerPorts: PortOpener = (slots, o) => {
  const cpuTowers = slots.filter((s) => s.kind === 'cpu').length * (o.processesOnHost ?? 1);
  const { gemmThreads } = cpuLayout(o.cores ?? os.availableParallelism(), cpuTowers);
  return slots.map((s) => WorkerTowerPort.open(s.label, { kind: s.kind, index: s.index, gemmThreads }, o.callMs));
};

/** Towers in this thread: on the slots' native devices, or on reference backends named 'ref:<rank>'. */
export function inProcessPorts(backend: 'native' | 'reference'): PortOpener {
  return (slots) => slots.map((s, r) => new InProcessTowerPort(backend === 'reference' ? new ReferenceBackend(`ref:${r}`) : NativeDevice.open(s.kind, s.index)));
}
