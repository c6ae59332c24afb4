// The `towerline launch` subcommand (src/launch/launcher.ts does the work; Note [Launcher]).
import { type Command, InvalidArgumentError } from 'commander';
import { launch } from '../launch/launcher.js';

const int = (name: string) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`${name} must be a non-negative integer, got '${v}'`);
  return n;
};

interface LaunchFlags {
  nprocPerNode: number;
  nnodes: number;
  nodeRank: number;
  rdzv?: string;
  runId?: string;
  maxRestarts: number;
  addr?: string;
  iface?: string;
  graceMs: number;
  servers?: number;
}

export function registerLaunch(program: Command): void {
  program.enablePositionalOptions();
  program
    .command('launch')
    .description('start the ranks of a multi-process run on this node (like torchrun / horovodrun): towerline launch [options] -- <command...>')
    .option('--nproc-per-node <n>', 'processes (ranks) on this node', int('--nproc-per-node'), 1)
    .option('--nnodes <n>', 'nodes (machines) in the run', int('--nnodes'), 1)
    .option('--node-rank <r>', "this node's index in [0, nnodes)", int('--node-rank'), 0)
    .option('--rdzv <url>', 'where the ranks meet: file:///shared/dir or redis://host:port (one node: a temporary directory)')
    .option('--run-id <id>', 'the run id every node gives (default on one node: a random one)')
    .option('--max-restarts <n>', 'restart every rank from the last checkpoint up to n times after a failure', int('--max-restarts'), 0)
    .option('--addr <address>', "the address the ranks' transport binds (default 127.0.0.1; beyond loopback needs TOWERLINE_TOKEN)")
    .option('--iface <name>', 'bind this network interface instead of --addr')
    .option('--grace-ms <ms>', 'after a rank fails, how long the others get to fail on their own before they are stopped', int('--grace-ms'), 10_000)
    .option('--servers <n>', "mode 'async' (towerline train --mode async): the first n ranks are parameter servers, each owning a shard of the parameters, the rest workers", int('--servers'))
    .argument('<command...>', 'the training command, e.g. towerline train --devices cpu*2 --checkpoint-dir ckpt --resume-if-present')
    .passThroughOptions()
    .action(async (command: string[], f: LaunchFlags) => {
      const r = await launch(
        { ...f, command },
        { out: (l) => process.stdout.write(`${l}\n`), err: (l) => process.stderr.write(`${l}\n`), env: process.env },
      );
      process.exitCode = r.exitCode;
    });
}
