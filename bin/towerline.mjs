#!/usr/bin/env node
// The `towerline` command. Installed, it runs the compiled CLI (dist/cli.js). In a source checkout (the package's own
// dev dependencies installed, so tsx is here) it runs src/cli.ts through tsx, so the repo never runs a stale build.
import { existsSync } from 'node:fs';

const checkout = existsSync(new URL('../node_modules/tsx/package.json', import.meta.url)) && existsSync(new URL('../src/cli.ts', import.meta.url));
let main;
if (checkout) {
  const { register } = await import('tsx/esm/api');
  register();
  ({ main } = await import('../src/cli.ts'));
} else {
  ({ main } = await import('../dist/cli.js'));
}
await main(process.argv);
