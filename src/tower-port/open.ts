// Opening the towers of a device list: one worker-thread port per device slot (production), or in-process ports
// (tests and embedding without workers) over native devices or the float64 reference backend.
import os from 'node:os';
import { NativeDevice } from '../backend/native-device.js';
import { native } from '../native/addon.js';
import { ReferenceBackend } from '../reference/reference-backend.js';
import type { DeviceSlot } from '../devices.js';
import type { TowerPort } from './port.js';
import { WorkerTowerPort } from './worker-port.js';
import { InProcessTowerPort } from './in-process-port.js';
import { cpuLayout } from './layout.js';

/** What a port opener needs besides the slots: per rank, GEMM threads and (when placed) its threads' CPUs. */
export interface OpenOptions {
  callMs: number;
  gemmThreads: number[];
  /** Note [Thread placement]: per rank, the device thread's CPU then each GEMM worker's; undefined: not pinned. */
  cpus?: Array<number[] | undefined>;
}

/** Opens one port per slot, each tower's GEMMs on `gemmThreads[rank]` threads; `arithmetic` names what computes. */
export interface PortOpener {
  (slots: DeviceSlot[], o: OpenOptions): TowerPort[];
  /** What computes the products, for the run's layout: the GEMM kernel (gemmInfo().kernel), or the reference. */
  arithmetic(): string;
  /** Whether each tower computes on a device thread of its own (only then are extra CPU towers folded by default: Note [CPU layout]). */
  deviceThreads: boolean;
}

/**
 * GEMM threads per tower: `requested` for every CPU tower, else `cores` (default: the host's) shared by the CPU towers (of every
 * process of a multi-process run on this machine, `processesOnHost`); 1 on other devices. The results are the same
 * bits at any count (Note [GEMM threads]).
 */
export function gemmThreadsFor(slots: DeviceSlot[], requested: number | undefined, processesOnHost = 1, cores = os.availableParallelism()): number[] {
  const cpuTowers = slots.filter((s) => s.kind === 'cpu').length * processesOnHost;
  const shared = cpuLayout(cores, cpuTowers).gemmThreads; // Note [CPU layout]
  return slots.map((s) => (s.kind === 'cpu' ? (requested ?? shared) : 1));
}

const cpusOf = (o: OpenOptions, r: number): { cpus?: number[] } => (o.cpus?.[r] ? { cpus: o.cpus[r] } : {});

const nativeArithmetic = (): string => native().gemmInfo().kernel;

/** One device actor per slot. */
export const workerPorts: PortOpener = Object.assign(
  (slots: DeviceSlot[], o: OpenOptions) =>
    slots.map((s, r) => WorkerTowerPort.open(s.label, { kind: s.kind, index: s.index, gemmThreads: o.gemmThreads[r]!, ...cpusOf(o, r) }, o.callMs)),
  { arithmetic: nativeArithmetic, deviceThreads: true },
);

/** Towers in this thread: on the slots' native devices, or on reference backends named 'ref:<rank>'. */
export function inProcessPorts(backend: 'native' | 'reference'): PortOpener {
  return Object.assign(
    (slots: DeviceSlot[], o: OpenOptions) =>
      slots.map((s, r) => new InProcessTowerPort(backend === 'reference' ? new ReferenceBackend(`ref:${r}`) : NativeDevice.open(s.kind, s.index, { gemmThreads: o.gemmThreads[r]!, ...cpusOf(o, r) }))),
    { arithmetic: backend === 'reference' ? () => 'float64 reference' : nativeArithmetic, deviceThreads: backend !== 'reference' },
  );
}
