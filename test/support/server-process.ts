// Runs the real CLI in a child process (tests that kill -9 or restart a server use it).
import { runCli } from '../../src/cli.js';

runCli(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (err) => {
    process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  },
);
