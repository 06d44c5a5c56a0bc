#!/usr/bin/env node
// Runs the compiled CLI (dist/, built by `npm install`). From a source checkout without a
// build, `npm run build` first.
import { runCli } from '../dist/cli.js';

runCli(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (err) => {
    process.stderr.write(`tollgate: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
