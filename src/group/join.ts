// Joining the world a runtime trains in: this process alone, or a process group (createRuntime({ group })).
import { ConfigError } from '../errors.js';
import type { ResolvedRuntimeOptions } from '../options.js';
import { groupOptionsFromEnv } from './options.js';
import { ProcessGroup } from './process-group.js';
import { planAcrossProcesses, ProcessWorld } from './process-world.js';
import { localWorld, type World } from './world.js';

/**
 * The world of a runtime with `towers` towers in this process. Everything checkable alone (the reduction, the
 * shares) is checked before the rendezvous; the group's deadline of a collective defaults to the runtime's.
 */
export async function joinWorld(o: ResolvedRuntimeOptions, towers: number, env: Record<string, string | undefined> = process.env): Promise<World> {
  if (!o.group) {
    const world = localWorld(towers);
    world.plan(o.reduction, { ranks: towers, length: 16 });
    return world;
  }
  if (o.shares === 'speed')
    throw new ConfigError(
      "shares: 'speed' splits by each tower's measured speed, which the processes of a run cannot agree on step by step; use 'equal' shares with a process group",
      'shares',
    );
  planAcrossProcesses(o.reduction, { ranks: towers, length: 16 });
  const given = o.group === true ? {} : o.group;
  if (given.slots !== undefined && given.slots !== towers)
    throw new ConfigError(`group.slots is ${given.slots} but this process runs ${towers} tower(s) (its devices); leave slots out, it defaults to the device count`, 'group.slots');
  const timeoutMs = given.timeoutMs ?? groupOptionsFromEnv(env).options.timeoutMs ?? o.collectiveTimeoutMs;
  return new ProcessWorld(await ProcessGroup.create({ ...given, slots: towers, timeoutMs }, env));
}
