#!/usr/bin/env node
// The `towerline` command: registers the TypeScript loader (the package ships its sources) and runs src/cli.ts.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/cli.ts');
await main(process.argv);
