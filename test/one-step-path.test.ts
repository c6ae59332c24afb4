// The fault tests run the production step code: every training step, faulted or not, is one runWith call of the
// tower's one compiled step program, made by the same function (StepLauncher.step) for every kind of port. A fault
// is only an extra argument of that call (contract section 1), never another program or another code path.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { createRuntime, mnist } from '../src/runtime.js';
import { createInProcessRuntime, ReferenceBackend } from '../src/advanced.js';
import { mnistMlp } from '../src/model/spec.js';
import { native } from '../src/native/addon.js';
import { injectFaults } from '../src/testing/faults.js';
import { TowerHost } from '../src/tower-port/tower-host.js';
import { BasePort } from '../src/tower-port/base-port.js';
import { WorkerTowerPort } from '../src/tower-port/worker-port.js';
import { InProcessTowerPort } from '../src/tower-port/in-process-port.js';
import { blocks } from '../src/index.js';

/** `program` is a string naming the program: native handles are process-wide, reference ids per backend. */
type Call = { program: string; fault: unknown };

/** Replaces obj[key] (a runWith) with a recorder for the duration of f. */
async function recording(obj: object, key: 'runWith', f: () => Promise<void>): Promise<Call[]> {
  const target = obj as Record<string, (...a: unknown[]) => unknown>;
  const original = target[key]!;
  const calls: Call[] = [];
  const owners = new Map<unknown, number>();
  const cancelled = new Set<Call>();
  target[key] = function (this: unknown, ...args: unknown[]) {
    if (!owners.has(this)) owners.set(this, owners.size);
    const call = { program: `${owners.get(this)}:${String(args[0])}`, fault: args[3] };
    calls.push(call);
    const result = original.apply(this, args) as Promise<{ cancelled?: boolean } | undefined>;
    // A step launched behind one whose guard tripped is cancelled by its device, then launched again (Note [Pipelined steps]).
    void result.then((r) => r?.cancelled && cancelled.add(call), () => undefined);
    return result;
  };
  try {
    await f();
  } finally {
    target[key] = original;
  }
  return calls.filter((c) => !cancelled.has(c));
}

/** Groups calls by program (= by tower) and checks the faulted one is the `nth` call of one program. */
function checkCalls(calls: Call[], towers: number, steps: number, fault: unknown): void {
  const programs = [...new Set(calls.map((c) => c.program))];
  assert.equal(calls.length, towers * steps, 'one runWith per tower per step, nothing else');
  assert.equal(programs.length, towers, 'one compiled step program per tower, the same at every step, faulted or not');
  const faulted = calls.filter((c) => c.fault !== undefined);
  assert.deepEqual(faulted.map((c) => c.fault), [fault], 'the fault rides on exactly one call');
  const ofThatTower = calls.filter((c) => c.program === faulted[0]!.program);
  assert.equal(ofThatTower.indexOf(faulted[0]!), 2, "the faulted call is its tower's third step");
}

it('no second step path exists: the tower side has no step method, and every port steps with the same function', () => {
  assert.equal('step' in TowerHost.prototype, false, 'a worker cannot run a step of its own');
  assert.equal(Object.hasOwn(WorkerTowerPort.prototype, 'step'), false);
  assert.equal(Object.hasOwn(InProcessTowerPort.prototype, 'step'), false);
  assert.equal(typeof BasePort.prototype.step, 'function');
});

it('worker towers: the faulted step is the same native runWith call, of the same program, as every other step', async () => {
  const fault = { point: 1, kind: 'stall', ms: 1 };
  const calls = await recording(native(), 'runWith', async () => {
    const rt = await createRuntime({ devices: 'cpu*2' });
    try {
      injectFaults(rt, (step, rank) => (step === 3 && rank === 1 ? { at: 'backward', kind: 'stall', ms: 1 } : undefined));
      await rt.train({ model: mnistMlp(16), optimizer: { type: 'sgd', lr: 0.1 }, data: mnist({ batchSize: 32 }), steps: 4 }).done;
    } finally {
      await rt.close();
    }
  });
  checkCalls(calls, 2, 4, fault);
});

it('in-process reference towers: the same, through the reference backend', async () => {
  const fault = { point: 2, kind: 'nan', index: 0 };
  const calls = await recording(ReferenceBackend.prototype, 'runWith', async () => {
    const rt = await createInProcessRuntime({ devices: 'cpu*3', backend: 'reference' });
    try {
      injectFaults(rt, (step, rank) => (step === 3 && rank === 2 ? { at: 'gradient', kind: 'nan', index: 0 } : undefined));
      const model = { input: { shape: [8] }, layers: [{ type: 'dense' as const, units: 3 }] };
      await rt.train({ model, optimizer: { type: 'sgd', lr: 0.1 }, data: blocks({ batchSize: 6, count: 24, dim: 8 }), steps: 4, guard: { nonFinite: 'skip', replicaCheckEvery: 0 } }).done;
    } finally {
      await rt.close();
    }
  });
  // The reference backend also runs the towers' small programs (init, broadcast, hashes) through runWith: keep the steps.
  const stepPrograms = new Set(calls.filter((c) => c.fault !== undefined).map((c) => c.program));
  const counts = new Map<string, number>();
  for (const c of calls) counts.set(c.program, (counts.get(c.program) ?? 0) + 1);
  const steps = calls.filter((c) => counts.get(c.program) === 4);
  assert.ok([...stepPrograms].every((p) => counts.get(p) === 4));
  checkCalls(steps, 3, 4, fault);
});
