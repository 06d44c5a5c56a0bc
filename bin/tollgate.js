#!/usr/bin/env node
// Runs the compiled CLI (dist/, built by `npm install`). From a source checkout without a
// build, `npm run build` first.
import { runCli } from '../dist/cli.js';
import { redactSecrets } from '../dist/redact.js';

runCli(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (err) => {
    // A store's connection error may quote its URL: never print the credentials in it.
    process.stderr.write(`tollgate: ${redactSecrets(err instanceof Error ? err.message : String(err))}\n`);
    process.exit(1);
  },
);
